// All-reduce bandwidth of the trainer's MPI path (mpirun -np N allreduce_bench [MB...]).
// Prints, per message size S: time per all-reduce, algorithm bandwidth S/t, bus bandwidth
// S/t * 2(n-1)/n (what a ring moves per rank), and the ring lower bound on t, 2(n-1)/n * S/B,
// where B is this node's measured single-thread memcpy bandwidth (the link of shared-memory MPI).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "trainer/mpi_comm.h"

int main(int argc, char** argv) {
  mrl::Communicator& comm = mrl::Communicator::Init(&argc, &argv);
  const int n = comm.world().size, rank = comm.world().rank;
  std::vector<double> sizes_mb;
  for (int i = 1; i < argc; ++i) sizes_mb.push_back(std::atof(argv[i]));
  if (sizes_mb.empty()) sizes_mb = {1, 4, 25, 100};
  // memcpy bandwidth (one thread, 256 MB, best of 5)
  std::vector<char> a(256 << 20, 1), b(256 << 20, 0);
  double best = 1e9;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(b.data(), a.data(), a.size());
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double memcpy_gbs = static_cast<double>(a.size()) / best / 1e9;
  if (rank == 0) {
    std::printf("ranks %d, memcpy bandwidth %.2f GB/s\n", n, memcpy_gbs);
    std::printf("%10s %12s %12s %12s %14s %10s\n", "size MB", "time ms", "algbw GB/s", "busbw GB/s",
                "ring bound ms", "of bound");
  }
  for (double mb : sizes_mb) {
    const size_t count = static_cast<size_t>(mb * (1 << 20) / sizeof(float));
    std::vector<float> buf(count, 1.0f);
    const int iters = mb >= 50 ? 5 : 20;
    for (int w = 0; w < 2; ++w) {
      if (!comm.Wait({comm.StartAllReduceSum(buf.data(), count)}, 120, "warm-up").ok()) comm.Abort(1);
    }
    (void)comm.Barrier(60, "barrier");
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) {
      if (!comm.Wait({comm.StartAllReduceSum(buf.data(), count)}, 120, "all-reduce").ok()) comm.Abort(1);
    }
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
    const double bytes = static_cast<double>(count * sizeof(float));
    const double factor = n > 1 ? 2.0 * (n - 1) / n : 0.0;
    const double bound = factor * bytes / (memcpy_gbs * 1e9);
    if (rank == 0) {
      std::printf("%10.1f %12.3f %12.2f %12.2f %14.3f %9.0f%%\n", mb, t * 1e3, bytes / t / 1e9,
                  bytes / t / 1e9 * factor, bound * 1e3, n > 1 ? 100 * bound / t : 0.0);
    }
  }
  comm.Finalize();
  return 0;
}
