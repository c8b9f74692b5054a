// A progress line every few seconds while a long step runs (mrlctl eval: the ground truth, the
// calibration, each plan's queries), from its own thread, so such a step is never silent.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace mrl::ops {

// While alive, prints "[eval  12.3s] <what()>" every `period` from its own thread, so that the
// long stages (ground truth, calibration, each plan's queries) are never silent for long.
class Ticker {
 public:
  Ticker(std::chrono::steady_clock::time_point t0, std::function<std::string()> what,
         std::chrono::milliseconds period = std::chrono::seconds(5))
      : thread_([this, t0, what = std::move(what), period] {
          std::unique_lock<std::mutex> lock(mu_);
          while (!cv_.wait_for(lock, period, [this] { return stop_; })) {
            std::printf(
                "[eval %6.1fs] %s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                what().c_str());
            std::fflush(stdout);
          }
        }) {}
  ~Ticker() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Ticker(const Ticker&) = delete;
  Ticker& operator=(const Ticker&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;   // guarded by mu_
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace mrl::ops
