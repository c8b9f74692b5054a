// The serving protocol above the framing: which table each MessageType carries, verification of
// received bodies, encoding of messages, and the mapping between wire error codes and Status.
// Used by mrl-shard, the coordinator, mrlctl and the tests; knows nothing of any daemon.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/frame.h"
#include "common/status.h"
#include "schemas/shard_generated.h"

namespace mrl::wire {

// Request/response pairs, by the stem of their names (FooRequest / FooResponse).
#define MRL_WIRE_RPCS(X) \
  X(Auth)                \
  X(Ping)                \
  X(CreateCollection)    \
  X(DescribeCollection)  \
  X(DropCollection)      \
  X(Upsert)              \
  X(Delete)              \
  X(Get)                 \
  X(Shortlist)           \
  X(Rerank)              \
  X(Search)              \
  X(Stats)               \
  X(ScanBucket)          \
  X(DropBucket)          \
  X(BucketChecksum)      \
  X(PurgeTombstones)

// Maps an object-API type (FooRequestT) or table type (FooRequest) to its MessageType.
template <typename T>
struct MessageTraits;

#define MRL_WIRE_TRAITS_(Table)                              \
  template <>                                                \
  struct MessageTraits<Table##T> {                           \
    static constexpr MessageType kType = MessageType::Table; \
    using TableType = Table;                                 \
  };                                                         \
  template <>                                                \
  struct MessageTraits<Table> {                              \
    static constexpr MessageType kType = MessageType::Table; \
    using NativeType = Table##T;                             \
  };
#define MRL_WIRE_RPC_TRAITS_(Stem)      \
  MRL_WIRE_TRAITS_(Stem##Request)       \
  MRL_WIRE_TRAITS_(Stem##Response)      \
  template <>                           \
  struct ResponseOf<Stem##Request##T> { \
    using type = Stem##Response##T;     \
  };

template <typename Req>
struct ResponseOf;
MRL_WIRE_RPCS(MRL_WIRE_RPC_TRAITS_)
MRL_WIRE_TRAITS_(Error)
#undef MRL_WIRE_RPC_TRAITS_
#undef MRL_WIRE_TRAITS_

// True for every type this protocol version defines (requests, responses and Error); false for
// the unused values between them.
bool IsKnownType(uint16_t type);
bool IsRequestType(uint16_t type);
// The response type of a request type (REQUIRES: IsRequestType).
MessageType ResponseTypeOf(MessageType request);

// Limits the verifier applies to every received body.
struct VerifyLimits {
  uint32_t max_depth = 64;
  uint32_t max_tables = 1'000'000;
};

// Judges one decoded frame before anything touches its body: version, reserved fields, known
// type, and the FlatBuffers verifier over the body as the type's root table. Returns Ok or the
// typed error to answer with; `why` gets a human-readable reason.
ErrorCode CheckFrame(const FrameHeader& header, std::span<const uint8_t> body, std::string* why,
                     const VerifyLimits& limits = {});

// The verified root table of `body`. REQUIRES: CheckFrame(...) == Ok for this type.
template <typename Table>
const Table* RootAs(std::span<const uint8_t> body) {
  return flatbuffers::GetRoot<Table>(body.data());
}

// Serialises an object-API message (e.g. UpsertRequestT) into a body.
template <typename Native>
std::vector<uint8_t> PackBody(const Native& msg) {
  flatbuffers::FlatBufferBuilder fbb(1024);
  fbb.Finish(MessageTraits<Native>::TableType::Pack(fbb, &msg));
  return std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

// A complete frame carrying `msg`.
template <typename Native>
std::vector<uint8_t> PackFrame(const Native& msg, uint64_t request_id, uint32_t deadline_ms = 0) {
  FrameHeader h;
  h.type = static_cast<uint16_t>(MessageTraits<Native>::kType);
  h.request_id = request_id;
  h.deadline_ms = deadline_ms;
  return EncodeFrame(h, PackBody(msg));
}

std::vector<uint8_t> ErrorBody(ErrorCode code, const std::string& message);
std::vector<uint8_t> ErrorFrame(uint64_t request_id, ErrorCode code, const std::string& message);

// Status <-> wire error code. Protocol codes without a Status twin map to the nearest one and
// keep their name in the message ("BadFrame: ...").
ErrorCode ToErrorCode(Status::Code code);
Status ToStatus(ErrorCode code, const std::string& message);

}  // namespace mrl::wire
