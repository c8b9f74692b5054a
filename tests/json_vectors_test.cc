// The HTTP search body's fast path (coordinator/json_vectors.h): the same numbers and the same
// remaining object as the full JSON parser, and a fall back to it for anything unusual.
#include "coordinator/json_vectors.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

namespace mrl::coord {
namespace {

using json = nlohmann::json;

TEST(JsonVectors, TheSameNumbersAndTheSameRestAsTheFullParser) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> v(1 + trial * 40);
    for (float& x : v) x = g(rng) * (trial % 3 == 0 ? 1e-7f : trial % 3 == 1 ? 1.0f : 3e5f);
    json body = {{"k", 10}, {"plan", {{"shortlist_dims", 16}, {"vector", "a nested key stays"}}},
                 {"vector", v}, {"deadline_ms", 500}};
    if (trial % 2) body["vectors"] = {v, v};
    const std::string text = body.dump(trial % 4 == 0 ? 2 : -1);
    auto fast = ExtractVectors(text);
    ASSERT_TRUE(fast.has_value()) << text.substr(0, 200);
    const json full = json::parse(text);
    ASSERT_TRUE(fast->vector.has_value());
    ASSERT_EQ(fast->vector->size(), v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      EXPECT_EQ((*fast->vector)[i], full["vector"][i].get<double>()) << "entry " << i;
    }
    EXPECT_EQ(fast->vectors.has_value(), trial % 2 == 1);
    if (fast->vectors) EXPECT_EQ(json(*fast->vectors), full["vectors"]);
    json rest = json::parse(fast->rest);
    EXPECT_EQ(rest["vector"], json::array());
    rest.erase("vector");
    rest.erase("vectors");
    json expect = full;
    expect.erase("vector");
    expect.erase("vectors");
    EXPECT_EQ(rest, expect);
  }
}

TEST(JsonVectors, AnythingUnusualFallsBackToTheFullParser) {
  for (const char* text : {
           R"({"vector": [1, 2, 3] garbage})",       // malformed after the array
           R"({"vector": [1, 2, 3)",                 // unterminated
           R"({"vector": [1, "2", 3]})",             // a string entry
           R"({"vector": [1, null]})",               // null
           R"({"vector": [NaN]})",                   // not JSON
           R"({"vector": [01]})",                    // leading zero
           R"({"vector": [+1]})",                    // leading plus
           R"({"vector": [.5]})",                    // no integer part
           R"({"vector": [1.]})",                    // no fraction digits
           R"({"vector": [1e]})",                    // no exponent digits
           R"({"vector": [-]})",                     // a lone minus
           R"({"vector": [1e999]})",                 // out of range: the full parser decides
           R"({"vector": [1], "vector": [2]})",      // given twice
           R"({"vec\u0074or": [1]})",                // an escaped key
           R"({"vector": 5})",                       // not an array
           R"({"vectors": [[1], 2]})",               // a non-array row
           R"([1, 2])",                              // not an object
           R"({"k": 10,})",                          // trailing comma
           "",
       }) {
    EXPECT_FALSE(ExtractVectors(text).has_value()) << text;
  }
}

TEST(JsonVectors, BodiesWithoutVectorsPassThroughUnchanged) {
  for (const char* text : {R"({})", R"({"k": 3, "exact": true, "s": "a \"quoted\" } ]"})",
                           R"( { "vector" : [ ] , "k" : 1 } )"}) {
    auto fast = ExtractVectors(text);
    ASSERT_TRUE(fast.has_value()) << text;
    EXPECT_EQ(json::parse(fast->rest), json::parse(text)) << text;
  }
  auto one = ExtractVectors(R"({"vector":[-0.5,1E+2,3e-1,0]})");
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(*one->vector, (std::vector<double>{-0.5, 100.0, 0.3, 0.0}));
}

}  // namespace
}  // namespace mrl::coord
