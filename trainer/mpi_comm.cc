#include "trainer/mpi_comm.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#ifdef MRL_WITH_MPI
#include <mpi.h>
#endif

namespace mrl {

namespace {
Communicator* g_comm = nullptr;

bool LaunchedByMpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MRL_FORCE_MPI"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}
}  // namespace

Communicator& Communicator::Init(int* argc, char*** argv) {
  if (g_comm != nullptr) return *g_comm;
  g_comm = new Communicator();
#ifdef MRL_WITH_MPI
  if (LaunchedByMpirun()) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    WorldInfo& w = g_comm->world_;
    w.mpi = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &w.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w.size);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &w.local_rank);
    MPI_Comm_size(local, &w.local_size);
    MPI_Comm_free(&local);
  }
#else
  (void)argc;
  (void)argv;
  if (LaunchedByMpirun() && std::getenv("OMPI_COMM_WORLD_SIZE") &&
      std::atoi(std::getenv("OMPI_COMM_WORLD_SIZE")) > 1) {
    std::fprintf(stderr, "mrl-trainer: started by mpirun but built without MPI support\n");
    std::exit(2);
  }
#endif
  return *g_comm;
}

Communicator& Communicator::Get() {
  if (g_comm == nullptr) return Init(nullptr, nullptr);
  return *g_comm;
}

Communicator::Request Communicator::Allocate() {
  for (size_t i = 0; i < in_use_.size(); ++i) {
    if (!in_use_[i]) {
      in_use_[i] = true;
      return static_cast<Request>(i);
    }
  }
#ifdef MRL_WITH_MPI
  requests_.push_back(new MPI_Request(MPI_REQUEST_NULL));
#else
  requests_.push_back(nullptr);
#endif
  in_use_.push_back(true);
  return static_cast<Request>(requests_.size() - 1);
}

namespace {
#ifdef MRL_WITH_MPI
MPI_Datatype TypeOf(float*) { return MPI_FLOAT; }
MPI_Datatype TypeOf(double*) { return MPI_DOUBLE; }
#endif
}  // namespace

template <typename T>
Communicator::Request Communicator::StartSum(T* data, size_t n) {
  const Request r = Allocate();
#ifdef MRL_WITH_MPI
  if (world_.mpi) {
    MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(n), TypeOf(data), MPI_SUM, MPI_COMM_WORLD,
                   static_cast<MPI_Request*>(requests_[static_cast<size_t>(r)]));
  }
#else
  (void)data;
  (void)n;
#endif
  return r;
}

Communicator::Request Communicator::StartAllReduceSum(float* data, size_t n) {
  return StartSum(data, n);
}

Communicator::Request Communicator::StartAllReduceSum(double* data, size_t n) {
  return StartSum(data, n);
}

Communicator::Request Communicator::StartBroadcast(void* data, size_t bytes, int root) {
  const Request r = Allocate();
#ifdef MRL_WITH_MPI
  if (world_.mpi) {
    MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, MPI_COMM_WORLD,
               static_cast<MPI_Request*>(requests_[static_cast<size_t>(r)]));
  }
#else
  (void)data;
  (void)bytes;
  (void)root;
#endif
  return r;
}

void Communicator::Poke() {
#ifdef MRL_WITH_MPI
  if (!world_.mpi) return;
  for (size_t i = 0; i < requests_.size(); ++i) {
    if (!in_use_[i]) continue;
    int done = 0;
    MPI_Test(static_cast<MPI_Request*>(requests_[i]), &done, MPI_STATUS_IGNORE);
  }
#endif
}

Status Communicator::Wait(const std::vector<Request>& requests, double timeout_s,
                          const std::string& what) {
#ifdef MRL_WITH_MPI
  if (world_.mpi) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(timeout_s));
    int spins = 0;
    for (Request r : requests) {
      auto* req = static_cast<MPI_Request*>(requests_[static_cast<size_t>(r)]);
      while (true) {
        int done = 0;
        const int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
          char msg[MPI_MAX_ERROR_STRING];
          int len = 0;
          MPI_Error_string(rc, msg, &len);
          return Status::IoError("rank " + std::to_string(world_.rank) + ": " + what +
                                 " failed: " + std::string(msg, static_cast<size_t>(len)));
        }
        if (done) break;
        if (std::chrono::steady_clock::now() > deadline) {
          return Status::FailedPrecondition(
              "rank " + std::to_string(world_.rank) + ": " + what + " did not complete within " +
              std::to_string(static_cast<int>(timeout_s)) +
              " s: a peer rank died or stalled (rerun the same command to resume from the last "
              "checkpoint)");
        }
        if (++spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }
#else
  (void)timeout_s;
  (void)what;
#endif
  for (Request r : requests) in_use_[static_cast<size_t>(r)] = false;
  return Status::Ok();
}

Status Communicator::AllReduceSum(double* data, size_t n, double timeout_s, const std::string& what) {
  if (!distributed()) return Status::Ok();
  return Wait({StartAllReduceSum(data, n)}, timeout_s, what);
}

Status Communicator::Broadcast(void* data, size_t bytes, int root, double timeout_s,
                               const std::string& what) {
  if (!distributed()) return Status::Ok();
  return Wait({StartBroadcast(data, bytes, root)}, timeout_s, what);
}

Status Communicator::Barrier(double timeout_s, const std::string& what) {
  double token = 0;
  return AllReduceSum(&token, 1, timeout_s, what);
}

void Communicator::Abort(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
#ifdef MRL_WITH_MPI
  if (world_.mpi) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

void Communicator::Finalize() {
#ifdef MRL_WITH_MPI
  if (world_.mpi && !finalized_) MPI_Finalize();
#endif
  finalized_ = true;
}

}  // namespace mrl
