#include "common/protocol.h"

namespace mrl::wire {
namespace {

// flatbuffers 2.0.8's verifier checks a vector's length prefix for 4-byte alignment but not its
// 8-byte elements, so a crafted body can place a [ulong] or [Candidate] at an address that is not
// 8-aligned (found by fuzz/frame_fuzzer under UBSan). Reading it would be a misaligned load, so
// such bodies are rejected here. Bodies sit in their own allocation, so the address's alignment
// is the offset's. An empty vector has nothing to load, and flatbuffers' own builder places an
// empty vector of structs 4 bytes off in about half the buffers it builds (a shard answering an
// empty candidate list for one query of a batch was refused as BadFrame): it is accepted.
template <typename T>
bool Aligned(const flatbuffers::Vector<T>* v) {
  return v == nullptr || v->size() == 0 || reinterpret_cast<uintptr_t>(v->Data()) % alignof(T) == 0;
}

template <typename Lists>
bool CandidatesAligned(const Lists* lists) {
  if (lists == nullptr) return true;
  for (const CandidateList* l : *lists) {
    if (!Aligned(l->candidates())) return false;
  }
  return true;
}

bool WideVectorsAligned(MessageType type, const uint8_t* body) {
  switch (type) {
    case MessageType::UpsertRequest: {
      const auto* req = flatbuffers::GetRoot<UpsertRequest>(body);
      return Aligned(req->ids()) && Aligned(req->versions());
    }
    case MessageType::DeleteRequest: {
      const auto* req = flatbuffers::GetRoot<DeleteRequest>(body);
      return Aligned(req->ids()) && Aligned(req->versions());
    }
    case MessageType::ScanBucketResponse:
      return Aligned(flatbuffers::GetRoot<ScanBucketResponse>(body)->tombstones());
    case MessageType::GetRequest:
      return Aligned(flatbuffers::GetRoot<GetRequest>(body)->ids());
    case MessageType::RerankRequest: {
      const auto* lists = flatbuffers::GetRoot<RerankRequest>(body)->id_lists();
      if (lists == nullptr) return true;
      for (const IdList* l : *lists) {
        if (!Aligned(l->ids())) return false;
      }
      return true;
    }
    case MessageType::ShortlistResponse:
      return CandidatesAligned(flatbuffers::GetRoot<ShortlistResponse>(body)->results());
    case MessageType::RerankResponse:
      return CandidatesAligned(flatbuffers::GetRoot<RerankResponse>(body)->results());
    case MessageType::SearchResponse:
      return CandidatesAligned(flatbuffers::GetRoot<SearchResponse>(body)->results());
    case MessageType::StatsResponse: {
      const auto* reqs = flatbuffers::GetRoot<StatsResponse>(body)->requests();
      if (reqs == nullptr) return true;
      for (const RequestStats* r : *reqs) {
        if (!Aligned(r->buckets_us())) return false;
      }
      return true;
    }
    default:
      return true;
  }
}

}  // namespace

bool IsKnownType(uint16_t type) {
  return type >= static_cast<uint16_t>(MessageType::MIN) + 1 &&
         type <= static_cast<uint16_t>(MessageType::MAX) &&
         EnumNameMessageType(static_cast<MessageType>(type))[0] != '\0';  // skips unused values
}

bool IsRequestType(uint16_t type) {
  return IsKnownType(type) && type != static_cast<uint16_t>(MessageType::Error) && (type % 2) == 1;
}

MessageType ResponseTypeOf(MessageType request) {
  return static_cast<MessageType>(static_cast<uint16_t>(request) + 1);
}

ErrorCode CheckFrame(const FrameHeader& header, std::span<const uint8_t> body, std::string* why,
                     const VerifyLimits& limits) {
  if (header.magic != kMagic) {
    *why = "bad magic";
    return ErrorCode::BadFrame;
  }
  if (header.version != kProtocolVersion) {
    *why = "protocol version " + std::to_string(header.version) + " not supported (speaks " +
           std::to_string(kProtocolVersion) + ")";
    return ErrorCode::UnsupportedVersion;
  }
  if (header.flags != 0 || header.reserved != 0) {
    *why = "reserved header fields must be zero";
    return ErrorCode::BadFrame;
  }
  if (!IsKnownType(header.type)) {
    *why = "unknown message type " + std::to_string(header.type);
    return ErrorCode::UnknownMessageType;
  }
  if (body.size() != header.body_length) {
    *why = "body length does not match the header";
    return ErrorCode::BadFrame;
  }
  flatbuffers::Verifier verifier(body.data(), body.size(), limits.max_depth, limits.max_tables);
  bool ok = false;
  switch (static_cast<MessageType>(header.type)) {
#define MRL_VERIFY_CASE_(Table)                 \
  case MessageType::Table:                      \
    ok = verifier.VerifyBuffer<Table>(nullptr); \
    break;
#define MRL_VERIFY_RPC_(Stem) MRL_VERIFY_CASE_(Stem##Request) MRL_VERIFY_CASE_(Stem##Response)
    MRL_WIRE_RPCS(MRL_VERIFY_RPC_)
    MRL_VERIFY_CASE_(Error)
#undef MRL_VERIFY_RPC_
#undef MRL_VERIFY_CASE_
    default:
      *why = "unknown message type " + std::to_string(header.type);
      return ErrorCode::UnknownMessageType;
  }
  if (!ok) {
    *why = std::string("body is not a valid ") +
           EnumNameMessageType(static_cast<MessageType>(header.type));
    return ErrorCode::BadFrame;
  }
  if (!WideVectorsAligned(static_cast<MessageType>(header.type), body.data())) {
    *why = "a 64-bit vector in the body is not 8-byte aligned";
    return ErrorCode::BadFrame;
  }
  return ErrorCode::Ok;
}

std::vector<uint8_t> ErrorBody(ErrorCode code, const std::string& message) {
  ErrorT e;
  e.code = code;
  e.message = message;
  return PackBody(e);
}

std::vector<uint8_t> ErrorFrame(uint64_t request_id, ErrorCode code, const std::string& message) {
  FrameHeader h;
  h.type = static_cast<uint16_t>(MessageType::Error);
  h.request_id = request_id;
  return EncodeFrame(h, ErrorBody(code, message));
}

ErrorCode ToErrorCode(Status::Code code) {
  switch (code) {
    case Status::Code::kOk:
      return ErrorCode::Ok;
    case Status::Code::kInvalidArgument:
      return ErrorCode::InvalidArgument;
    case Status::Code::kNotFound:
      return ErrorCode::NotFound;
    case Status::Code::kCorruption:
      return ErrorCode::Corruption;
    case Status::Code::kIoError:
      return ErrorCode::IoError;
    case Status::Code::kFailedPrecondition:
      return ErrorCode::FailedPrecondition;
    case Status::Code::kOutOfRange:
      return ErrorCode::OutOfRange;
    case Status::Code::kInternal:
      return ErrorCode::Internal;
    case Status::Code::kDeadlineExceeded:
      return ErrorCode::DeadlineExceeded;
    case Status::Code::kUnauthenticated:
      return ErrorCode::Unauthenticated;
    case Status::Code::kUnavailable:
      return ErrorCode::Unavailable;
    case Status::Code::kResourceExhausted:
      return ErrorCode::Overloaded;
    case Status::Code::kAborted:
      return ErrorCode::StaleEpoch;
    case Status::Code::kInsufficientStorage:
      return ErrorCode::InsufficientStorage;
  }
  return ErrorCode::Internal;
}

Status ToStatus(ErrorCode code, const std::string& message) {
  const std::string named = std::string(EnumNameErrorCode(code)) + ": " + message;
  switch (code) {
    case ErrorCode::Ok:
      return Status::Ok();
    case ErrorCode::InvalidArgument:
      return Status::InvalidArgument(message);
    case ErrorCode::NotFound:
      return Status::NotFound(message);
    case ErrorCode::Corruption:
      return Status::Corruption(message);
    case ErrorCode::IoError:
      return Status::IoError(message);
    case ErrorCode::FailedPrecondition:
      return Status::FailedPrecondition(message);
    case ErrorCode::OutOfRange:
      return Status::OutOfRange(message);
    case ErrorCode::Internal:
      return Status::Internal(message);
    case ErrorCode::BadFrame:
      return Status::InvalidArgument(named);
    case ErrorCode::UnsupportedVersion:
      return Status::FailedPrecondition(named);
    case ErrorCode::FrameTooLarge:
      return Status::ResourceExhausted(named);
    case ErrorCode::Unauthenticated:
      return Status::Unauthenticated(message);
    case ErrorCode::DeadlineExceeded:
      return Status::DeadlineExceeded(message);
    case ErrorCode::Overloaded:
      return Status::ResourceExhausted(named);
    case ErrorCode::UnknownMessageType:
      return Status::InvalidArgument(named);
    case ErrorCode::Unavailable:
      return Status::Unavailable(message);
    case ErrorCode::StaleEpoch:
      return Status::Aborted(message);
    case ErrorCode::InsufficientStorage:
      return Status::InsufficientStorage(message);
  }
  return Status::Internal(named);
}

}  // namespace mrl::wire
