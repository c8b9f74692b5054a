#include "meta/leased_key.h"

#include <algorithm>
#include <iostream>
#include <random>

namespace mrl::meta {

bool ValidMemberId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string RandomMemberId(const std::string& prefix) {
  std::random_device rd;
  std::mt19937_64 g((static_cast<uint64_t>(rd()) << 32) ^ rd());
  static const char* kHex = "0123456789abcdef";
  std::string id = prefix;
  uint64_t v = g();
  for (int i = 0; i < 12; ++i, v >>= 4) id += kHex[v & 15];
  return id;
}

using Clock = std::chrono::steady_clock;

LeasedKey::LeasedKey(Store* store, LeasedKeyOptions options, std::function<std::string()> value)
    : store_(store), opt_(std::move(options)), value_(std::move(value)) {
  thread_ = std::thread([this] { Loop(); });
}

LeasedKey::~LeasedKey() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeasedKey::Update() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    update_now_ = true;
  }
  cv_.notify_all();
}

LeasedKey::State LeasedKey::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

bool LeasedKey::Register(const std::string& value) {
  auto granted = store_->GrantLease(opt_.ttl_s);
  if (!granted.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    state_.last_error = granted.status().ToString();
    return false;
  }
  auto put = store_->Put(opt_.key, value, *granted);
  if (!put.ok()) {
    (void)store_->RevokeLease(*granted);
    std::lock_guard<std::mutex> lock(mu_);
    state_.last_error = put.status().ToString();
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  state_.registered = true;
  state_.lease = *granted;
  ++state_.registrations;
  state_.last_error.clear();
  put_value_ = value;
  std::cerr << opt_.log_name << ": registered " << opt_.key << " on " << store_->Describe()
            << " (lease " << *granted << ", TTL " << opt_.ttl_s << " s)" << std::endl;
  return true;
}

void LeasedKey::Loop() {
  const auto tick = std::chrono::milliseconds(std::max(1, opt_.ttl_s) * 1000 / 3);
  auto retry = std::chrono::milliseconds(100);
  Clock::time_point last_keepalive = Clock::now();
  bool logged_error = false;
  for (;;) {
    int64_t lease = 0;
    std::string put_value;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      update_now_ = false;
      lease = state_.registered ? state_.lease : 0;
      put_value = put_value_;
    }
    const std::string value = value_();
    bool ok = true;
    if (lease == 0) {
      ok = Register(value);
      last_keepalive = Clock::now();
    } else {
      if (value != put_value) {
        auto put = store_->Put(opt_.key, value, lease);
        std::lock_guard<std::mutex> lock(mu_);
        if (put.ok()) {
          put_value_ = value;
        } else {
          ok = false;
          state_.last_error = put.status().ToString();
          // A put under a lease etcd no longer has: register anew at once.
          if (put.status().message().find("lease not found") != std::string::npos)
            state_.registered = false;
        }
      }
      if (ok && Clock::now() - last_keepalive >= tick) {
        Status st = store_->KeepAlive(lease);
        std::lock_guard<std::mutex> lock(mu_);
        if (st.ok()) {
          last_keepalive = Clock::now();
        } else {
          ok = false;
          state_.last_error = st.ToString();
          if (st.code() == Status::Code::kNotFound) {
            std::cerr << opt_.log_name << ": lease " << lease << " of " << opt_.key
                      << " expired (paused, or the store was away past the TTL); registering again"
                      << std::endl;
            state_.registered = false;
          }
        }
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (ok) {
      retry = std::chrono::milliseconds(100);
      logged_error = false;
    } else {
      if (!logged_error) {
        std::cerr << opt_.log_name << ": cannot keep " << opt_.key << " registered: "
                  << state_.last_error << " (retrying; serving goes on)" << std::endl;
        logged_error = true;
      }
      retry = std::min<std::chrono::milliseconds>(retry * 2, tick);
    }
    // Not registered or just failed: retry soon; otherwise wake for the next keep-alive.
    const auto wait = !ok || !state_.registered
                          ? std::chrono::duration_cast<Clock::duration>(retry)
                          : std::chrono::duration_cast<Clock::duration>(tick) -
                                (Clock::now() - last_keepalive);
    cv_.wait_for(lock, std::max<Clock::duration>(wait, std::chrono::milliseconds(10)),
                 [&] { return stop_ || update_now_; });
  }
}

Status LeasedKey::Release() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  int64_t lease = 0;
  std::string put_value;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!state_.registered) return Status::Ok();
    lease = state_.lease;
    put_value = put_value_;
  }
  const std::string value = value_();
  if (value != put_value) (void)store_->Put(opt_.key, value, lease);
  Status st = store_->RevokeLease(lease);
  std::lock_guard<std::mutex> lock(mu_);
  state_.registered = false;
  if (!st.ok() && st.code() != Status::Code::kNotFound) {
    state_.last_error = st.ToString();
    return st;
  }
  std::cerr << opt_.log_name << ": " << opt_.key << " released (lease " << lease << " revoked)"
            << std::endl;
  return Status::Ok();
}

}  // namespace mrl::meta
