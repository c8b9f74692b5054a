#include "coordinator/json_vectors.h"

#include <charconv>

namespace mrl::coord {
namespace {

bool IsWs(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

class Scanner {
 public:
  explicit Scanner(std::string_view s) : s_(s) {}
  size_t pos() const { return i_; }
  void SkipWs() {
    while (i_ < s_.size() && IsWs(s_[i_])) ++i_;
  }
  bool Eat(char c) {
    SkipWs();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool Peek(char c) {
    SkipWs();
    return i_ < s_.size() && s_[i_] == c;
  }
  bool AtEnd() {
    SkipWs();
    return i_ == s_.size();
  }
  // A string; `raw` gets its text between the quotes. False on an unterminated string; *escaped
  // says whether it held a backslash (such a key is left to the full parser).
  bool String(std::string_view* raw, bool* escaped) {
    SkipWs();
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    const size_t start = ++i_;
    *escaped = false;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (static_cast<unsigned char>(s_[i_]) < 0x20) return false;
      if (s_[i_] == '\\') {
        *escaped = true;
        ++i_;
      }
      ++i_;
    }
    if (i_ >= s_.size()) return false;
    *raw = s_.substr(start, i_ - start);
    ++i_;
    return true;
  }
  // One number of JSON's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
  bool Number(double* out) {
    SkipWs();
    const size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ >= s_.size() || !IsDigit(s_[i_])) return false;
    if (s_[i_] == '0') {
      ++i_;
    } else {
      while (i_ < s_.size() && IsDigit(s_[i_])) ++i_;
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (i_ >= s_.size() || !IsDigit(s_[i_])) return false;
      while (i_ < s_.size() && IsDigit(s_[i_])) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (i_ >= s_.size() || !IsDigit(s_[i_])) return false;
      while (i_ < s_.size() && IsDigit(s_[i_])) ++i_;
    }
    const auto [end, ec] = std::from_chars(s_.data() + start, s_.data() + i_, *out);
    // Out of range (1e999): the full parser decides what that means.
    return ec == std::errc() && end == s_.data() + i_;
  }
  // [ number (, number)* ] or [ ].
  bool NumberArray(std::vector<double>* out) {
    if (!Eat('[')) return false;
    if (Eat(']')) return true;
    do {
      double x;
      if (!Number(&x)) return false;
      out->push_back(x);
    } while (Eat(','));
    return Eat(']');
  }
  // Any other value, skipped without checking it (the full parser checks `rest`): a string, or
  // brackets matched outside strings, or a scalar up to the next ',' or '}' at this level.
  bool SkipValue() {
    SkipWs();
    if (i_ >= s_.size()) return false;
    if (s_[i_] == '"') {
      std::string_view raw;
      bool escaped;
      return String(&raw, &escaped);
    }
    if (s_[i_] == '{' || s_[i_] == '[') {
      int depth = 0;
      while (i_ < s_.size()) {
        const char c = s_[i_];
        if (c == '"') {
          std::string_view raw;
          bool escaped;
          if (!String(&raw, &escaped)) return false;
          continue;
        }
        if (c == '{' || c == '[') ++depth;
        if (c == '}' || c == ']') {
          if (--depth == 0) {
            ++i_;
            return true;
          }
        }
        ++i_;
      }
      return false;
    }
    const size_t start = i_;
    while (i_ < s_.size() && s_[i_] != ',' && s_[i_] != '}' && !IsWs(s_[i_])) ++i_;
    return i_ > start;
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

std::optional<ExtractedVectors> ExtractVectors(std::string_view body) {
  Scanner sc(body);
  if (!sc.Eat('{')) return std::nullopt;
  ExtractedVectors out;
  std::vector<std::pair<size_t, size_t>> cuts;  // [start, end) of each array taken out
  if (!sc.Eat('}')) {
    do {
      std::string_view key;
      bool escaped = false;
      if (!sc.String(&key, &escaped) || !sc.Eat(':')) return std::nullopt;
      if (escaped) return std::nullopt;  // it may spell "vector": the full parser decides
      sc.SkipWs();
      const size_t start = sc.pos();
      if (key == "vector") {
        if (out.vector) return std::nullopt;  // given twice
        out.vector.emplace();
        if (!sc.Peek('[') || !sc.NumberArray(&*out.vector)) return std::nullopt;
        cuts.emplace_back(start, sc.pos());
      } else if (key == "vectors") {
        if (out.vectors) return std::nullopt;
        out.vectors.emplace();
        if (!sc.Eat('[')) return std::nullopt;
        if (!sc.Eat(']')) {
          do {
            out.vectors->emplace_back();
            if (!sc.Peek('[') || !sc.NumberArray(&out.vectors->back())) return std::nullopt;
          } while (sc.Eat(','));
          if (!sc.Eat(']')) return std::nullopt;
        }
        cuts.emplace_back(start, sc.pos());
      } else if (!sc.SkipValue()) {
        return std::nullopt;
      }
    } while (sc.Eat(','));
    if (!sc.Eat('}')) return std::nullopt;
  }
  if (!sc.AtEnd()) return std::nullopt;
  size_t at = 0;
  for (const auto& [start, end] : cuts) {
    out.rest.append(body.substr(at, start - at));
    out.rest.append("[]");
    at = end;
  }
  out.rest.append(body.substr(at));
  return out;
}

}  // namespace mrl::coord
