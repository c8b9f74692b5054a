#include "common/frame.h"

#include <algorithm>
#include <cstring>

namespace mrl::wire {
namespace {

constexpr size_t kInitialBodyBytes = 64 << 10;

template <typename T>
void Put(uint8_t* p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

template <typename T>
T Get(const uint8_t* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(p[i]) << (8 * i);
  return v;
}

}  // namespace

void EncodeHeader(const FrameHeader& h, uint8_t out[kHeaderSize]) {
  Put<uint32_t>(out + 0, h.magic);
  Put<uint16_t>(out + 4, h.version);
  Put<uint16_t>(out + 6, h.type);
  Put<uint16_t>(out + 8, h.flags);
  Put<uint16_t>(out + 10, h.reserved);
  Put<uint64_t>(out + 12, h.request_id);
  Put<uint32_t>(out + 20, h.deadline_ms);
  Put<uint32_t>(out + 24, h.body_length);
  Put<uint32_t>(out + 28, h.epoch);
}

FrameHeader DecodeHeader(const uint8_t in[kHeaderSize]) {
  FrameHeader h;
  h.magic = Get<uint32_t>(in + 0);
  h.version = Get<uint16_t>(in + 4);
  h.type = Get<uint16_t>(in + 6);
  h.flags = Get<uint16_t>(in + 8);
  h.reserved = Get<uint16_t>(in + 10);
  h.request_id = Get<uint64_t>(in + 12);
  h.deadline_ms = Get<uint32_t>(in + 20);
  h.body_length = Get<uint32_t>(in + 24);
  h.epoch = Get<uint32_t>(in + 28);
  return h;
}

std::vector<uint8_t> EncodeFrame(FrameHeader header, std::span<const uint8_t> body) {
  header.body_length = static_cast<uint32_t>(body.size());
  std::vector<uint8_t> out(kHeaderSize + body.size());
  EncodeHeader(header, out.data());
  if (!body.empty()) std::memcpy(out.data() + kHeaderSize, body.data(), body.size());
  return out;
}

const char* DecodeErrorName(DecodeError e) {
  switch (e) {
    case DecodeError::kNone:
      return "none";
    case DecodeError::kBadMagic:
      return "bad magic";
    case DecodeError::kTooLarge:
      return "frame too large";
  }
  return "unknown";
}

size_t FrameDecoder::Append(std::span<const uint8_t> data) {
  size_t used = 0;
  while (used < data.size() && error_ == DecodeError::kNone) {
    if (!in_body_) {
      // Take the magic alone first, so garbage fails before anything after it is consumed.
      const size_t want = header_fill_ < 4 ? 4 - header_fill_ : kHeaderSize - header_fill_;
      const size_t n = std::min(want, data.size() - used);
      std::memcpy(header_buf_ + header_fill_, data.data() + used, n);
      header_fill_ += n;
      used += n;
      if (header_fill_ >= 4 && Get<uint32_t>(header_buf_) != kMagic) {
        error_ = DecodeError::kBadMagic;
        break;
      }
      if (header_fill_ < kHeaderSize) continue;
      const FrameHeader h = DecodeHeader(header_buf_);
      header_fill_ = 0;
      if (h.body_length > max_body_) {
        error_ = DecodeError::kTooLarge;
        error_header_ = h;
        break;
      }
      current_ = Frame{h, {}};
      // Grown as bytes arrive, so a header alone cannot make us allocate max_body_.
      current_.body.resize(std::min<size_t>(h.body_length, kInitialBodyBytes));
      body_fill_ = 0;
      in_body_ = true;
    } else {
      const size_t length = current_.header.body_length;
      if (body_fill_ == current_.body.size() && body_fill_ < length) {
        current_.body.resize(std::min(length, 2 * current_.body.size()));
      }
      const size_t n = std::min(current_.body.size() - body_fill_, data.size() - used);
      if (n > 0) std::memcpy(current_.body.data() + body_fill_, data.data() + used, n);
      body_fill_ += n;
      used += n;
    }
    if (in_body_ && body_fill_ == current_.header.body_length) {
      ready_.push_back(std::move(current_));
      current_ = Frame{};
      in_body_ = false;
    }
  }
  // A header with an empty body completes without further input.
  if (in_body_ && error_ == DecodeError::kNone && body_fill_ == current_.header.body_length) {
    ready_.push_back(std::move(current_));
    current_ = Frame{};
    in_body_ = false;
  }
  return used;
}

std::optional<Frame> FrameDecoder::Next() {
  if (ready_.empty()) return std::nullopt;
  Frame f = std::move(ready_.front());
  ready_.pop_front();
  return f;
}

}  // namespace mrl::wire
