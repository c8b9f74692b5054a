// The process world of a training job. Under mpirun it wraps MPI_COMM_WORLD; otherwise it is a
// world of one and every collective is a no-op. Every blocking wait has a deadline, so a dead or
// stalled peer turns into an error naming the operation and the step instead of a hang.
// Thread safety: call from the training thread only (MPI_THREAD_FUNNELED).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/status.h"

namespace mrl {

struct WorldInfo {
  int rank = 0;
  int size = 1;
  int local_rank = 0;  // rank among the processes on this node (picks the GPU)
  int local_size = 1;
  bool mpi = false;
};

class Communicator {
 public:
  // Initializes MPI when the process was started by mpirun (or MRL_FORCE_MPI=1) and MPI support
  // was compiled in. Call once, before any other use.
  static Communicator& Init(int* argc, char*** argv);
  static Communicator& Get();

  const WorldInfo& world() const { return world_; }
  bool distributed() const { return world_.size > 1; }

  // A handle to a started collective.
  using Request = int;
  // Starts an in-place sum all-reduce of n floats / doubles.
  Request StartAllReduceSum(float* data, size_t n);
  Request StartAllReduceSum(double* data, size_t n);
  Request StartBroadcast(void* data, size_t bytes, int root);
  // Drives progress of started collectives (MPI progresses non-blocking calls only inside MPI).
  void Poke();
  // Waits for the given requests until `timeout_s`; `what` names the operation in errors.
  Status Wait(const std::vector<Request>& requests, double timeout_s, const std::string& what);

  // Blocking helpers built on the above.
  Status AllReduceSum(double* data, size_t n, double timeout_s, const std::string& what);
  Status Broadcast(void* data, size_t bytes, int root, double timeout_s, const std::string& what);
  Status Barrier(double timeout_s, const std::string& what);

  // Ends every process of the job (used after an unrecoverable collective error).
  [[noreturn]] void Abort(int code);
  void Finalize();

 private:
  Communicator() = default;
  WorldInfo world_;
  std::vector<void*> requests_;  // MPI_Request storage, indexed by Request
  std::vector<bool> in_use_;
  Request Allocate();
  template <typename T>
  Request StartSum(T* data, size_t n);
  bool finalized_ = false;
};

}  // namespace mrl
