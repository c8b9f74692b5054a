// The one definition of mAP@k, recall@k and 1-NN top-1 (common/retrieval_metrics.h), checked
// against values worked out by hand, including mixed-label lists where the paper's form (sum of
// precisions / k) and the "divide by the number of hits" form give different numbers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/exact_search.h"
#include "common/provenance.h"
#include "common/retrieval_metrics.h"

namespace mrl {
namespace {

TEST(RetrievalMetrics, AveragePrecisionDividesByKNotByHits) {
  // Label 7 at positions 1, 3 and 4 of 10: precisions 1/1, 2/3, 3/4, sum 2.41667.
  // Paper: 2.41667 / 10 = 0.241667. Dividing by the 3 hits would give 0.805556.
  const std::vector<int64_t> r = {7, 1, 7, 7, 2, 3, 4, 5, 6, 8};
  EXPECT_NEAR(AveragePrecisionAtK(r, 7, 10), 0.2416666666666667, 1e-12);
  EXPECT_GT(std::abs(AveragePrecisionAtK(r, 7, 10) - 0.8055555555555556), 0.5);
  // Only the first k positions count: at k = 3, hits at 1 and 3 -> (1 + 2/3) / 3.
  EXPECT_NEAR(AveragePrecisionAtK(r, 7, 3), (1.0 + 2.0 / 3.0) / 3.0, 1e-12);
}

TEST(RetrievalMetrics, AveragePrecisionOfAllHitsIsOneAndOfNoHitsIsZero) {
  const std::vector<int64_t> all(10, 4), none(10, 5);
  EXPECT_DOUBLE_EQ(AveragePrecisionAtK(all, 4, 10), 1.0);
  EXPECT_DOUBLE_EQ(AveragePrecisionAtK(none, 4, 10), 0.0);
}

TEST(RetrievalMetrics, AveragePrecisionCountsMissingPositionsAsMisses) {
  // Two answers, both relevant, k = 10: (1 + 1) / 10, not 1.
  const std::vector<int64_t> short_list = {3, 3};
  EXPECT_NEAR(AveragePrecisionAtK(short_list, 3, 10), 0.2, 1e-12);
  EXPECT_DOUBLE_EQ(AveragePrecisionAtK({}, 3, 10), 0.0);
}

TEST(RetrievalMetrics, AveragePrecisionLateHitsWeighLess) {
  // One hit at position 10 of 10: (1/10) / 10 = 0.01; the same hit first: 1/10 = 0.1.
  std::vector<int64_t> late(10, 0), early(10, 0);
  late[9] = 1;
  early[0] = 1;
  EXPECT_NEAR(AveragePrecisionAtK(late, 1, 10), 0.01, 1e-12);
  EXPECT_NEAR(AveragePrecisionAtK(early, 1, 10), 0.1, 1e-12);
}

TEST(RetrievalMetrics, RecallCountsOverlapOverKAndDuplicatesOnce) {
  const std::vector<uint64_t> truth = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(RecallAtK(std::vector<uint64_t>{1, 2, 3, 9}, truth, 4), 0.75);
  EXPECT_DOUBLE_EQ(RecallAtK(std::vector<uint64_t>{4, 3, 2, 1}, truth, 4), 1.0);  // order-free
  // A duplicated hit is one hit: {1, 1, 1, 1} finds 1 of 4.
  EXPECT_DOUBLE_EQ(RecallAtK(std::vector<uint64_t>{1, 1, 1, 1}, truth, 4), 0.25);
  // Only got[:k] and truth[:k] count.
  EXPECT_DOUBLE_EQ(RecallAtK(std::vector<uint64_t>{9, 8, 1, 2}, truth, 2), 0.0);
  EXPECT_DOUBLE_EQ(RecallAtK(std::vector<uint64_t>{2, 1}, truth, 2), 1.0);
  // Fewer answers than k: the missing ones are misses.
  EXPECT_DOUBLE_EQ(RecallAtK(std::vector<uint64_t>{1}, truth, 4), 0.25);
  // A truth smaller than k (a database of 2 points): its size is the denominator.
  EXPECT_DOUBLE_EQ(RecallAtK(std::vector<uint64_t>{5, 6}, std::vector<uint64_t>{6, 5}, 10), 1.0);
}

TEST(RetrievalMetrics, ScorerAveragesMixedQueries) {
  RetrievalScorer s(4);
  // Query A (label 1): labels {1, 2, 1, 2}: AP = (1 + 2/3) / 4 = 0.416667, top-1 right.
  s.AddLabels(std::vector<int64_t>{1, 2, 1, 2}, 1);
  // Query B (label 2): labels {1, 2, 2, 2}: AP = (1/2 + 2/3 + 3/4) / 4 = 0.479167, top-1 wrong.
  s.AddLabels(std::vector<int64_t>{1, 2, 2, 2}, 2);
  EXPECT_EQ(s.labelled_queries(), 2u);
  EXPECT_NEAR(s.map_at_k(), (0.4166666666666667 + 0.4791666666666667) / 2, 1e-12);
  EXPECT_DOUBLE_EQ(s.top1(), 0.5);
  // The hits-normalised form would give (0.8333 + 0.6389) / 2 = 0.7361: far from ours.
  EXPECT_GT(std::abs(s.map_at_k() - 0.7361111111111112), 0.2);
  s.AddRecall(std::vector<uint64_t>{1, 2, 3, 4}, std::vector<uint64_t>{1, 2, 3, 4});
  s.AddRecall(std::vector<uint64_t>{1, 9, 9, 9}, std::vector<uint64_t>{1, 2, 3, 4});
  EXPECT_DOUBLE_EQ(s.recall_at_k(), (1.0 + 0.25) / 2);
  EXPECT_EQ(s.recall_queries(), 2u);
}

TEST(ExactSearch, MatchesANaiveDoublePrecisionCosineScan) {
  // 1000 x 48 random rows with different norms (cosine must ignore the norm), 37 queries (not a
  // multiple of the query batch), 3 threads; k = 10 and a k larger than a tiny database.
  const size_t n = 1000, d = 48, nq = 37, k = 10;
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  std::vector<float> db(n * d), q(nq * d);
  for (size_t i = 0; i < n; ++i) {
    const float scale = 0.1f + static_cast<float>(i % 7);
    for (size_t j = 0; j < d; ++j) db[i * d + j] = scale * g(rng);
  }
  for (auto& x : q) x = g(rng);
  const auto got = ExactCosineTopK(db.data(), n, q.data(), nq, d, k, 3);
  ASSERT_EQ(got.size(), nq);
  for (size_t qi = 0; qi < nq; ++qi) {
    std::vector<std::pair<double, uint32_t>> sc;
    double qn = 0;
    for (size_t j = 0; j < d; ++j) qn += double(q[qi * d + j]) * q[qi * d + j];
    for (size_t r = 0; r < n; ++r) {
      double dot = 0, rn = 0;
      for (size_t j = 0; j < d; ++j) {
        dot += double(q[qi * d + j]) * db[r * d + j];
        rn += double(db[r * d + j]) * db[r * d + j];
      }
      sc.push_back({-dot / std::sqrt(qn * rn), static_cast<uint32_t>(r)});
    }
    std::sort(sc.begin(), sc.end());
    ASSERT_EQ(got[qi].size(), k);
    for (size_t i = 0; i < k; ++i)
      EXPECT_EQ(got[qi][i], sc[i].second) << "query " << qi << " rank " << i;
  }
  const auto tiny = ExactCosineTopK(db.data(), 3, q.data(), 2, d, k, 1);
  ASSERT_EQ(tiny.size(), 2u);
  EXPECT_EQ(tiny[0].size(), 3u);  // fewer rows than k: all of them, best first
}

TEST(Provenance, StampsCommitQuotedCommandMachineAndDate) {
  const char* argv[] = {"bench", "--plan", "Ds=16 K=200", "it's"};
  const nlohmann::json s = Provenance(4, argv);
  EXPECT_FALSE(s["commit"].get<std::string>().empty());
  EXPECT_EQ(s["command"].get<std::string>(), "bench --plan 'Ds=16 K=200' 'it'\\''s'");
  EXPECT_GE(s["machine"]["cores"].get<int>(), 1);
  EXPECT_EQ(s["machine"]["loadavg_start"].size(), 3u);
  EXPECT_GT(s["machine"]["mem_gib"].get<double>(), 0.1);
  EXPECT_EQ(s["date"].get<std::string>().size(), 20u);  // 2026-12-01T21:40:00Z
  const std::string line = ProvenanceLine(s);
  EXPECT_NE(line.find(s["commit"].get<std::string>()), std::string::npos);
  EXPECT_NE(line.find("cores"), std::string::npos);
}

}  // namespace
}  // namespace mrl
