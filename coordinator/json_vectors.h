// The fast path of an HTTP search body: its top-level "vector" (an array of numbers) and
// "vectors" (an array of such arrays) parsed with std::from_chars, the rest left for the JSON
// parser. A 2048-float query is ~44 KB of text; nlohmann::json spends ~0.4 ms parsing its numbers
// into a DOM, more than the whole binary-API search (issue 13: HTTP within 1.5x of binary).
//
// Contract: the arrays taken out are checked against JSON's number grammar; `rest` is the body
// with each of them replaced by `[]`, so `rest` is valid JSON exactly when the body is. Anything
// the fast path does not handle (escaped keys, a key given twice, a non-number entry, malformed
// text) makes it return nullopt, and the caller parses the whole body as before (same answers,
// same error messages).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mrl::coord {

struct ExtractedVectors {
  std::string rest;
  std::optional<std::vector<double>> vector;                // "vector", when present
  std::optional<std::vector<std::vector<double>>> vectors;  // "vectors", when present
};

std::optional<ExtractedVectors> ExtractVectors(std::string_view body);

}  // namespace mrl::coord
