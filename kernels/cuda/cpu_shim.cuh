// cpu_shim.cuh: run generated mlc CUDA kernels on the CPU for numeric tests where no GPU is
// present. Force-included ahead of a generated source and compiled as C++20 by the host
// compiler: one std::thread per CUDA thread, a std::barrier per block for __syncthreads() and
// one per warp for shuffles; blocks run one after another, sharing one shared-memory array.
// Slow: keep shapes small. Never part of a real build.
#pragma once
#define __CUDACC_RTC__ 1  // leaves out the host launchers, which need the CUDA runtime

#include <math.h>

#include <barrier>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __shared__
#define __forceinline__ inline
#define __launch_bounds__(threads)
#define __align__(bytes) __attribute__((aligned(bytes)))

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

extern "C" {
alignas(16) float mlc_smem[64 * 1024];  // 256 KiB: above any per-block limit
}

namespace mlc_cpu {
inline thread_local std::barrier<>* block_barrier = nullptr;
inline thread_local std::barrier<>* warp_barrier = nullptr;
inline thread_local float* warp_slots = nullptr;
}  // namespace mlc_cpu

inline void __syncthreads() { mlc_cpu::block_barrier->arrive_and_wait(); }

inline float __shfl_xor_sync(unsigned, float value, int offset) {
  const unsigned lane = threadIdx.x & 31;
  mlc_cpu::warp_slots[lane] = value;
  mlc_cpu::warp_barrier->arrive_and_wait();
  const float other = mlc_cpu::warp_slots[lane ^ offset];
  mlc_cpu::warp_barrier->arrive_and_wait();
  return other;
}

inline float __int_as_float(int bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

namespace mlc_cpu {
// Every generated kernel takes only float pointers; call it through a pointer of that arity.
inline void invoke(void* kernel, int count, float** a) {
  using P = float*;
  switch (count) {
    case 1: reinterpret_cast<void (*)(P)>(kernel)(a[0]); break;
    case 2: reinterpret_cast<void (*)(P, P)>(kernel)(a[0], a[1]); break;
    case 3: reinterpret_cast<void (*)(P, P, P)>(kernel)(a[0], a[1], a[2]); break;
    case 4: reinterpret_cast<void (*)(P, P, P, P)>(kernel)(a[0], a[1], a[2], a[3]); break;
    case 5: reinterpret_cast<void (*)(P, P, P, P, P)>(kernel)(a[0], a[1], a[2], a[3], a[4]);
      break;
    case 6:
      reinterpret_cast<void (*)(P, P, P, P, P, P)>(kernel)(a[0], a[1], a[2], a[3], a[4], a[5]);
      break;
    case 7:
      reinterpret_cast<void (*)(P, P, P, P, P, P, P)>(kernel)(a[0], a[1], a[2], a[3], a[4], a[5],
                                                             a[6]);
      break;
    case 8:
      reinterpret_cast<void (*)(P, P, P, P, P, P, P, P)>(kernel)(a[0], a[1], a[2], a[3], a[4],
                                                                a[5], a[6], a[7]);
      break;
  }
}
}  // namespace mlc_cpu

// Launch `kernel` on a (gx, gy, gz) grid of `threads`-thread blocks; returns 0, or -1 for an
// argument count the shim does not handle.
extern "C" int mlc_cpu_launch(void* kernel, unsigned gx, unsigned gy, unsigned gz,
                              unsigned threads, int count, float** args) {
  if (count < 1 || count > 8) return -1;
  gridDim = {gx, gy, gz};
  blockDim = {threads, 1, 1};
  for (unsigned z = 0; z < gz; ++z)
    for (unsigned y = 0; y < gy; ++y)
      for (unsigned x = 0; x < gx; ++x) {
        std::barrier<> block(threads);
        std::vector<std::unique_ptr<std::barrier<>>> warps;
        for (unsigned w = 0; w < (threads + 31) / 32; ++w)
          warps.push_back(std::make_unique<std::barrier<>>(32));
        std::vector<float> slots(warps.size() * 32);
        std::vector<std::thread> pool;
        for (unsigned t = 0; t < threads; ++t)
          pool.emplace_back([&, t] {
            threadIdx = {t, 0, 0};
            blockIdx = {x, y, z};
            mlc_cpu::block_barrier = &block;
            mlc_cpu::warp_barrier = warps[t / 32].get();
            mlc_cpu::warp_slots = &slots[t / 32 * 32];
            mlc_cpu::invoke(kernel, count, args);
          });
        for (auto& thread : pool) thread.join();
      }
  return 0;
}
