// Framing of the serving protocol: every message is one frame, a fixed 32-byte header followed
// by a FlatBuffers body (schemas/shard.fbs). All integers are little-endian.
//
//   offset size field
//        0    4 magic        0x464C524D ("MRLF" in memory order)
//        4    2 version      kProtocolVersion
//        6    2 type         wire::MessageType of the body's root table
//        8    2 flags        reserved, must be 0
//       10    2 reserved     must be 0
//       12    8 request_id   chosen by the requester; echoed in the response
//       20    4 deadline_ms  relative deadline from receipt; 0 = none
//       24    4 body_length  bytes following the header, <= the receiver's max frame size
//       28    4 epoch        shard-map epoch the sender routed by; 0 = not stamped
//
// The decoder only judges what it needs to stay in sync: a bad magic or a body length above
// the limit is fatal to the connection (no way to find the next frame), everything else
// (version, type, flags, the body itself) is judged per frame so the connection can answer with
// a typed error and go on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace mrl::wire {

inline constexpr uint32_t kMagic = 0x464C524Du;
inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr size_t kHeaderSize = 32;
inline constexpr uint32_t kDefaultMaxFrameBytes = 64u << 20;  // body bytes

struct FrameHeader {
  uint32_t magic = kMagic;
  uint16_t version = kProtocolVersion;
  uint16_t type = 0;
  uint16_t flags = 0;
  uint16_t reserved = 0;
  uint64_t request_id = 0;
  uint32_t deadline_ms = 0;
  uint32_t body_length = 0;
  uint32_t epoch = 0;  // a shard rejects a request stamped older than the newest it has seen
};

void EncodeHeader(const FrameHeader& h, uint8_t out[kHeaderSize]);
FrameHeader DecodeHeader(const uint8_t in[kHeaderSize]);

// Header + body in one buffer ready for the socket; sets body_length from body.
std::vector<uint8_t> EncodeFrame(FrameHeader header, std::span<const uint8_t> body);

struct Frame {
  FrameHeader header;
  // Owned and separately allocated, so FlatBuffers reads it at an aligned address.
  std::vector<uint8_t> body;
};

enum class DecodeError : uint8_t { kNone = 0, kBadMagic, kTooLarge };
const char* DecodeErrorName(DecodeError e);

// Streaming decoder: feed it whatever the socket returned, take complete frames out.
// Not thread-safe (one per connection).
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_body_bytes = kDefaultMaxFrameBytes)
      : max_body_(max_body_bytes) {}

  // Consumes all of `data` unless a fatal error occurs, after which nothing more is consumed
  // and error() stays set. Returns the number of bytes consumed.
  size_t Append(std::span<const uint8_t> data);

  // The oldest complete frame, if any.
  std::optional<Frame> Next();
  size_t pending_frames() const { return ready_.size(); }

  DecodeError error() const { return error_; }
  // The header that caused the error (valid only for kTooLarge; request id for the reply).
  const FrameHeader& error_header() const { return error_header_; }
  // True while a frame is partially received (a peer closing now truncated it).
  bool mid_frame() const { return header_fill_ > 0 || in_body_; }

 private:
  uint32_t max_body_;
  uint8_t header_buf_[kHeaderSize] = {};
  size_t header_fill_ = 0;
  bool in_body_ = false;
  Frame current_;
  size_t body_fill_ = 0;
  std::deque<Frame> ready_;
  DecodeError error_ = DecodeError::kNone;
  FrameHeader error_header_;
};

}  // namespace mrl::wire
