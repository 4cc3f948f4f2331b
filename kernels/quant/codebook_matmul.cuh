// codebook_matmul.cuh: hand-written device code for y = x @ W where W[k, n] = codebook[idx]
// (or codebook[n, idx], one codebook per output column) and idx is stored as a little-endian
// bitstream of BITS-bit fields. The float W exists only in shared memory, one tile at a time.
//
// One block computes a BM x BN tile of y with THREADS threads (1-D blockDim); thread (ty, tx)
// owns rows ty + TY * i and columns tx + 16 * j, so a warp reads consecutive W columns.
// Shared memory is the caller's dynamic array: codebook(s), then an x tile, then a W tile.
// cuda_source() pastes this file into every generated source, which then needs no include
// path; it compiles under nvcc, NVRTC (CuPy) and the CPU shim of mlc.kernels.cuda.

namespace mlc_quant {

// Field i of a BITS-bit little-endian bitstream: bits [i * BITS, (i + 1) * BITS), where bit j
// of the stream is bit j % 8 of byte j / 8.
template <int BITS>
__device__ __forceinline__ int unpack_index(const unsigned char* __restrict__ packed,
                                            long long i) {
  const long long bit = i * BITS;
  const int shift = static_cast<int>(bit & 7);
  unsigned word = packed[bit >> 3];
  // 3, 5, 6 and 7-bit fields may cross into the next byte; reading it only then keeps the
  // last field of the stream from reading one byte past the end.
  if (8 % BITS != 0 && shift + BITS > 8) {
    word |= static_cast<unsigned>(packed[(bit >> 3) + 1]) << 8;
  }
  return static_cast<int>((word >> shift) & ((1u << BITS) - 1u));
}

// Offsets (in floats) of one block's shared-memory regions.
template <int BITS, bool PER_CHANNEL, int BM, int BN, int BK>
struct SmemLayout {
  static constexpr int kLevels = 1 << BITS;
  static constexpr int kBooks = PER_CHANNEL ? BN : 1;
  static constexpr int kBook = 0;
  static constexpr int kX = kBook + kBooks * kLevels;
  static constexpr int kW = kX + BM * BK;
  static constexpr int kFloats = kW + BK * BN;
};

template <int BITS, bool PER_CHANNEL, int BM, int BN, int BK, int THREADS>
__device__ __forceinline__ void codebook_matmul(
    const float* __restrict__ x, const unsigned char* __restrict__ packed,
    const float* __restrict__ codebook, float* __restrict__ y, int m, int n, int k, int levels,
    float* smem) {
  using Layout = SmemLayout<BITS, PER_CHANNEL, BM, BN, BK>;
  constexpr int TX = 16, TY = THREADS / TX;
  static_assert(THREADS % TX == 0 && BM % TY == 0 && BN % TX == 0, "tile/thread mismatch");
  constexpr int RM = BM / TY, RN = BN / TX;
  float* const book = smem + Layout::kBook;
  float* const xs = smem + Layout::kX;
  float* const ws = smem + Layout::kW;
  const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
  const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;

  // Stage the codebook(s) once per block. Levels at or past the codebook's length read as 0,
  // so a corrupt index never reads outside the codebook.
  for (int i = tid; i < Layout::kBooks * Layout::kLevels; i += THREADS) {
    const int level = i % Layout::kLevels, col = col0 + i / Layout::kLevels;
    const bool present = level < levels && (!PER_CHANNEL || col < n);
    const long long base = PER_CHANNEL ? static_cast<long long>(col) * levels : 0;
    book[i] = present ? codebook[base + level] : 0.0f;
  }

  float acc[RM][RN] = {};
  for (int k0 = 0; k0 < k; k0 += BK) {
    __syncthreads();  // the codebook is staged / the previous tiles are consumed
    for (int i = tid; i < BM * BK; i += THREADS) {
      const int row = row0 + i / BK, kk = k0 + i % BK;
      xs[i] = (row < m && kk < k) ? x[static_cast<long long>(row) * k + kk] : 0.0f;
    }
    for (int i = tid; i < BK * BN; i += THREADS) {
      const int kk = k0 + i / BN, c = i % BN, col = col0 + c;
      float w = 0.0f;
      if (kk < k && col < n) {
        const int index = unpack_index<BITS>(packed, static_cast<long long>(kk) * n + col);
        w = book[(PER_CHANNEL ? c * Layout::kLevels : 0) + index];
      }
      ws[i] = w;
    }
    __syncthreads();
#pragma unroll 4
    for (int kk = 0; kk < BK; ++kk) {
      float a[RM], b[RN];
#pragma unroll
      for (int i = 0; i < RM; ++i) a[i] = xs[(ty + TY * i) * BK + kk];
#pragma unroll
      for (int j = 0; j < RN; ++j) b[j] = ws[kk * BN + tx + TX * j];
#pragma unroll
      for (int i = 0; i < RM; ++i) {
#pragma unroll
        for (int j = 0; j < RN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
    }
  }

#pragma unroll
  for (int i = 0; i < RM; ++i) {
    const int row = row0 + ty + TY * i;
#pragma unroll
    for (int j = 0; j < RN; ++j) {
      const int col = col0 + tx + TX * j;
      if (row < m && col < n) y[static_cast<long long>(row) * n + col] = acc[i][j];
    }
  }
}

}  // namespace mlc_quant
