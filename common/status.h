// Status and Result<T>: how every layer reports an expected failure (bad input, missing file,
// I/O error) without exceptions. Exceptions are reserved for bugs and are caught at main().
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace mrl {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,
    kNotFound,
    kCorruption,
    kIoError,
    kFailedPrecondition,
    kOutOfRange,
    kInternal,
    // Serving (the wire protocol's client side): retry elsewhere or later.
    kDeadlineExceeded,
    kUnauthenticated,
    kUnavailable,
    kResourceExhausted,
    // A conflict with newer state (e.g. a request routed by a stale shard map): refresh, retry.
    kAborted,
    // The shard's disk is above its high watermark (or full): writes are refused until space
    // returns; deletes, reads and searches go on.
    kInsufficientStorage,
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return Status(Code::kInvalidArgument, std::move(m)); }
  static Status NotFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
  static Status Corruption(std::string m) { return Status(Code::kCorruption, std::move(m)); }
  static Status IoError(std::string m) { return Status(Code::kIoError, std::move(m)); }
  static Status FailedPrecondition(std::string m) {
    return Status(Code::kFailedPrecondition, std::move(m));
  }
  static Status OutOfRange(std::string m) { return Status(Code::kOutOfRange, std::move(m)); }
  static Status Internal(std::string m) { return Status(Code::kInternal, std::move(m)); }
  static Status DeadlineExceeded(std::string m) {
    return Status(Code::kDeadlineExceeded, std::move(m));
  }
  static Status Unauthenticated(std::string m) {
    return Status(Code::kUnauthenticated, std::move(m));
  }
  static Status Unavailable(std::string m) { return Status(Code::kUnavailable, std::move(m)); }
  static Status ResourceExhausted(std::string m) {
    return Status(Code::kResourceExhausted, std::move(m));
  }

  static Status Aborted(std::string m) { return Status(Code::kAborted, std::move(m)); }
  static Status InsufficientStorage(std::string m) {
    return Status(Code::kInsufficientStorage, std::move(m));
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: nesting dims must be strictly increasing"
  std::string ToString() const;
  // The same code with "<context>: " in front of the message (Ok stays Ok).
  Status WithContext(const std::string& context) const;

 private:
  Status(Code c, std::string m) : code_(c), message_(std::move(m)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

const char* CodeName(Status::Code code);

// Holds either a value or a non-OK Status.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace mrl

#define MRL_RETURN_IF_ERROR(expr)        \
  do {                                   \
    ::mrl::Status _st = (expr);          \
    if (!_st.ok()) return _st;           \
  } while (0)
