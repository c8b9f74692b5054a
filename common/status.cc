#include "common/status.h"

namespace mrl {

const char* CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk: return "OK";
    case Status::Code::kInvalidArgument: return "InvalidArgument";
    case Status::Code::kNotFound: return "NotFound";
    case Status::Code::kCorruption: return "Corruption";
    case Status::Code::kIoError: return "IoError";
    case Status::Code::kFailedPrecondition: return "FailedPrecondition";
    case Status::Code::kOutOfRange: return "OutOfRange";
    case Status::Code::kInternal: return "Internal";
    case Status::Code::kDeadlineExceeded: return "DeadlineExceeded";
    case Status::Code::kUnauthenticated: return "Unauthenticated";
    case Status::Code::kUnavailable: return "Unavailable";
    case Status::Code::kResourceExhausted: return "ResourceExhausted";
    case Status::Code::kAborted: return "Aborted";
    case Status::Code::kInsufficientStorage: return "InsufficientStorage";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(CodeName(code_)) + ": " + message_;
}

Status Status::WithContext(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + message_);
}

}  // namespace mrl
