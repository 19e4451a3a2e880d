// The CUDA emulation's runtime: a grid runs block by block; the threads of a block are
// fibers on one OS thread that switch at barriers and warp collectives.
//
// Why fibers and not OS threads: a block has up to 1024 threads and a test launches
// thousands of blocks; fibers switch in nanoseconds and let the scheduler pick which thread
// runs next. It picks a fresh random order for every round, seeded per launch, so kernels
// that read shared memory before the barrier that publishes it give different (and wrong)
// answers from run to run. A block in which threads wait at a barrier that the others never
// reach is reported as a deadlock, and a warp collective whose mask names an exited lane as
// an error: both are undefined behaviour on a GPU that often goes unnoticed there.
#include "cuda_emu.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <mutex>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <c10/util/Exception.h>

// Under AddressSanitizer (FASTGAN_EMU_SANITIZE=1, tests/emu.py) every switch between stacks is
// announced, or ASan would take a fiber's frames for overflows of the thread's own stack.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define FASTGAN_EMU_ASAN 1
#endif

#include "fibers.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace fastgan {
namespace emu {
namespace {

constexpr int kWarp = 32;

struct Barrier {
  int expected = 0, arrived = 0;
  uint64_t generation = 0;
  int warp = -1;  // the warp whose collectives it serves; -1: the block's __syncthreads
};

struct Fiber {
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t context;
#endif
  dim3 idx;
  int lane = 0, warp = 0;
  bool done = false;
  const void* stack_bottom = nullptr;  // the usable stack, for AddressSanitizer
  size_t stack_bytes = 0;
  void* asan_fake_stack = nullptr;
  const uint64_t* waiting_on = nullptr;  // a barrier's generation, while waiting at it
  uint64_t waiting_since = 0;
  size_t shared_accesses = 0;  // since the warp's last barrier: the next one's instruction
  uint64_t finish_rounds = 0;  // FASTGAN_FINISH_ROUND calls
};

struct Warp {
  Barrier barrier;
  unsigned present = 0;  // lanes that exist and have not exited
  alignas(16) unsigned char slots[kWarp][16];
  // The 4-byte words each shared-memory instruction since the last barrier touched, in order.
  std::vector<std::vector<uintptr_t>> shared_words;
};

struct Block {
  dim3 idx, dim, grid;
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  Barrier barrier;
  SharedStats shared{0, 0};
  uint64_t finish_rounds = 0;  // the most any thread of any block of the launch counted
  const std::function<void()>* body = nullptr;
  Fiber* current = nullptr;
#if defined(__x86_64__)
  void* scheduler_sp = nullptr;
#else
  ucontext_t scheduler;
#endif
  uint64_t serial = 0;  // this OS thread's count of blocks run, this one included (fresh_shared)
  const void* scheduler_stack_bottom = nullptr;  // for AddressSanitizer
  size_t scheduler_stack_bytes = 0;
  void* asan_fake_stack = nullptr;
  std::string error;  // the first problem found in this block
  void fail(const std::string& message) {
    if (error.empty()) error = message;
  }
};

thread_local Block* tls_block = nullptr;
thread_local uint64_t tls_blocks_run = 0;
thread_local std::vector<std::unique_ptr<Stack>> tls_stacks;

std::atomic<uint64_t> g_seed{0x9e3779b97f4a7c15ull};
std::atomic<uint64_t> g_launches{0}, g_blocks{0}, g_threads{0};
std::atomic<uint64_t> g_shared_requests{0}, g_shared_wavefronts{0};
std::atomic<uint64_t> g_finish_rounds{0};  // the most of any launch
thread_local uintptr_t tls_stream = kLegacyStream;
std::mutex g_log_mutex;
std::deque<SharedStats> g_shared_log;  // per launch, the latest kSharedLog
constexpr size_t kSharedLog = 4096;

Block& block() {
  TORCH_CHECK(tls_block != nullptr, "fastgan emu: a CUDA built-in was used outside a kernel launch");
  return *tls_block;
}

std::string coords(const dim3& d) {
  std::ostringstream s;
  s << "(" << d.x << ", " << d.y << ", " << d.z << ")";
  return s.str();
}

// AddressSanitizer's fiber protocol: announce the stack about to run; once on it, confirm (and
// learn the stack that was left). A finished fiber passes no save slot, freeing its fake stack.
void asan_leaving(void** save, const void* bottom, size_t bytes) {
#ifdef FASTGAN_EMU_ASAN
  __sanitizer_start_switch_fiber(save, bottom, bytes);
#else
  (void)save, (void)bottom, (void)bytes;
#endif
}
void asan_arrived(void* fake_stack, const void** left_bottom, size_t* left_bytes) {
#ifdef FASTGAN_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, left_bottom, left_bytes);
#else
  (void)fake_stack, (void)left_bottom, (void)left_bytes;
#endif
}

void to_scheduler(Block& b, Fiber& f) {
  asan_leaving(f.done ? nullptr : &f.asan_fake_stack, b.scheduler_stack_bottom, b.scheduler_stack_bytes);
#if defined(__x86_64__)
  fastgan_emu_switch(&f.sp, b.scheduler_sp);
#else
  swapcontext(&f.context, &b.scheduler);
#endif
  asan_arrived(f.asan_fake_stack, nullptr, nullptr);
}

void to_fiber(Block& b, Fiber& f) {
  b.current = &f;
  asan_leaving(&b.asan_fake_stack, f.stack_bottom, f.stack_bytes);
#if defined(__x86_64__)
  fastgan_emu_switch(&b.scheduler_sp, f.sp);
#else
  swapcontext(&b.scheduler, &f.context);
#endif
  asan_arrived(b.asan_fake_stack, nullptr, nullptr);
  b.current = nullptr;
}

// Prices the warp's shared-memory instructions since its last barrier (see SharedStats) and
// starts counting afresh: every lane of the warp is at the barrier, so they are complete.
void settle_shared(Block& b, int warp) {
  Warp& w = b.warps[warp];
  for (auto& words : w.shared_words) {
    if (words.empty()) continue;
    std::sort(words.begin(), words.end());
    words.erase(std::unique(words.begin(), words.end()), words.end());
    int per_bank[kWarp] = {};
    int most = 0;
    for (uintptr_t word : words) most = std::max(most, ++per_bank[word % kWarp]);
    b.shared.requests += 1;
    b.shared.wavefronts += uint64_t(most);
    words.clear();
  }
  const size_t first = size_t(warp) * kWarp, last = std::min(b.fibers.size(), first + kWarp);
  for (size_t i = first; i < last; ++i) b.fibers[i].shared_accesses = 0;
}

void release(Block& b, Barrier& barrier) {
  barrier.arrived = 0;
  ++barrier.generation;
  if (barrier.warp >= 0) {
    settle_shared(b, barrier.warp);
  } else {
    for (size_t w = 0; w < b.warps.size(); ++w) settle_shared(b, int(w));
  }
}

// Arrive at `barrier`; return once every expected thread has arrived.
void arrive_and_wait(Block& b, Barrier& barrier) {
  Fiber& f = *b.current;
  const uint64_t generation = barrier.generation;
  if (++barrier.arrived >= barrier.expected) {
    release(b, barrier);
    return;
  }
  f.waiting_on = &barrier.generation;
  f.waiting_since = generation;
  to_scheduler(b, f);
  f.waiting_on = nullptr;
}

// A thread that returns no longer counts at barriers (as on Volta and later GPUs).
void leave(Block& b, Barrier& barrier) {
  --barrier.expected;
  if (barrier.arrived > 0 && barrier.arrived >= barrier.expected) release(b, barrier);
}

void fiber_main(void*) {
  Block& b = *tls_block;
  asan_arrived(nullptr, &b.scheduler_stack_bottom, &b.scheduler_stack_bytes);
  (*b.body)();
  Fiber& f = *b.current;
  f.done = true;
  leave(b, b.barrier);
  Warp& w = b.warps[f.warp];
  w.present &= ~(1u << f.lane);
  leave(b, w.barrier);
  to_scheduler(b, f);
  std::abort();  // a finished fiber is never resumed
}

#if !defined(__x86_64__)
void fiber_trampoline() { fiber_main(nullptr); }
#endif

void start_fiber(Block& b, Fiber& f, Stack& stack) {
  f.stack_bottom = stack.bottom();
  f.stack_bytes = Stack::kBytes;
#if defined(__x86_64__)
  // The frame fastgan_emu_switch pops: control words, r15, r14, r13, r12, rbx, rbp, return address.
  auto* top = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(stack.top()) & ~uintptr_t(15));
  uint64_t* sp = top - 8;
  const uint32_t mxcsr = 0x1F80;  // round to nearest, exceptions masked, no flush to zero
  const uint16_t fpu_cw = 0x037F;
  sp[0] = uint64_t(mxcsr) | (uint64_t(fpu_cw) << 32);
  sp[1] = sp[2] = 0;
  sp[3] = reinterpret_cast<uint64_t>(&fiber_main);  // r13
  sp[4] = 0;                                        // r12: fiber_main's argument
  sp[5] = sp[6] = 0;
  sp[7] = reinterpret_cast<uint64_t>(&fastgan_emu_fiber_start);
  f.sp = sp;
#else
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = stack.bottom();
  f.context.uc_stack.ss_size = Stack::kBytes;
  f.context.uc_link = nullptr;
  makecontext(&f.context, fiber_trampoline, 0);
#endif
  (void)b;
}

uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void run_block(Block& b, uint64_t& rng) {
  const int n = int(b.fibers.size());
  while (int(tls_stacks.size()) < n) tls_stacks.push_back(std::make_unique<Stack>());
  for (int i = 0; i < n; ++i) start_fiber(b, b.fibers[i], *tls_stacks[i]);
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  int live = n;
  while (live > 0) {
    // A fresh order each round: which thread reaches shared memory first is left to chance.
    for (int i = n - 1; i > 0; --i) std::swap(order[i], order[int(splitmix(rng) % uint64_t(i + 1))]);
    bool progressed = false;
    for (int i : order) {
      Fiber& f = b.fibers[i];
      if (f.done || (f.waiting_on != nullptr && *f.waiting_on == f.waiting_since)) continue;
      to_fiber(b, f);
      progressed = true;
      if (f.done) --live;
    }
    if (!progressed) {
      int at_block = 0, at_warp = 0;
      for (const Fiber& f : b.fibers) {
        if (f.done) continue;
        (f.waiting_on == &b.barrier.generation ? at_block : at_warp)++;
      }
      b.fail("deadlock: " + std::to_string(at_block) + " thread(s) wait at __syncthreads and " +
             std::to_string(at_warp) + " at a warp collective that the other threads never reach");
      return;  // the stuck fibers are abandoned; their stacks are reused
    }
  }
  for (size_t w = 0; w < b.warps.size(); ++w) settle_shared(b, int(w));  // after the last barrier
  for (const Fiber& f : b.fibers) b.finish_rounds = std::max(b.finish_rounds, f.finish_rounds);
}

}  // namespace

DeviceProps& device_props() {
  static DeviceProps props;
  return props;
}

void set_seed(uint64_t seed) { g_seed = seed; }
Stats stats() { return {g_launches.load(), g_blocks.load(), g_threads.load(), g_finish_rounds.load()}; }
void reset_stats() {
  g_launches = g_blocks = g_threads = g_finish_rounds = 0;
  g_shared_requests = g_shared_wavefronts = 0;
  const std::lock_guard<std::mutex> lock(g_log_mutex);
  g_shared_log.clear();
}
void count_finish_round() { ++block().current->finish_rounds; }
void use_per_thread_stream(bool on) { tls_stream = on ? kPerThreadStream : kLegacyStream; }
uintptr_t current_stream_handle() { return tls_stream; }
SharedStats shared_stats() { return {g_shared_requests.load(), g_shared_wavefronts.load()}; }
std::vector<SharedStats> shared_stats_per_launch() {
  const std::lock_guard<std::mutex> lock(g_log_mutex);
  return {g_shared_log.begin(), g_shared_log.end()};
}

unsigned char* fresh_shared(unsigned char* bytes, size_t size, uint64_t* seen) {
  Block& b = block();
  if (*seen != b.serial) {
    std::memset(bytes, 0xff, size);
    *seen = b.serial;
  }
  return bytes;
}

void record_shared_access(const void* p, size_t bytes, const void* begin, const void* end) {
  Block& b = block();
  Fiber& f = *b.current;
  const auto at = reinterpret_cast<uintptr_t>(p);
  if (at < reinterpret_cast<uintptr_t>(begin) || at + bytes > reinterpret_cast<uintptr_t>(end)) {
    std::ostringstream s;
    s << "shared memory out of bounds: a " << bytes << "-byte access at byte offset "
      << std::ptrdiff_t(at - reinterpret_cast<uintptr_t>(begin)) << " of a "
      << (reinterpret_cast<uintptr_t>(end) - reinterpret_cast<uintptr_t>(begin)) << "-byte array in thread "
      << coords(f.idx);
    b.fail(s.str());
    return;
  }
  Warp& w = b.warps[f.warp];
  if (w.shared_words.size() <= f.shared_accesses) w.shared_words.resize(f.shared_accesses + 1);
  auto& words = w.shared_words[f.shared_accesses++];
  for (uintptr_t word = at / 4; word <= (at + bytes - 1) / 4; ++word) words.push_back(word);
}

const dim3& thread_idx() { return block().current->idx; }
const dim3& block_idx() { return block().idx; }
const dim3& block_dim() { return block().dim; }
const dim3& grid_dim() { return block().grid; }
int lane_id() { return block().current->lane; }

void check_aligned(const void* p, size_t bytes) {
  if (reinterpret_cast<uintptr_t>(p) % bytes == 0) return;
  std::ostringstream s;
  s << "misaligned address: a " << bytes << "-byte vector access at " << p << " in thread "
    << coords(block().current->idx);
  block().fail(s.str());
}

void syncthreads() {
  Block& b = block();
  arrive_and_wait(b, b.barrier);
}

namespace {
Warp& checked_warp(Block& b, unsigned mask, const char* what) {
  Fiber& f = *b.current;
  Warp& w = b.warps[f.warp];
  if (!(mask >> f.lane & 1u))
    b.fail(std::string(what) + ": lane " + std::to_string(f.lane) + " is not in its own mask");
  if ((mask & ~w.present) != 0) {
    std::ostringstream s;
    s << what << " in thread " << coords(f.idx) << ": mask 0x" << std::hex << mask << " names lanes 0x"
      << (mask & ~w.present) << " that have exited or do not exist";
    b.fail(s.str());
  }
  return w;
}
}  // namespace

void syncwarp(unsigned mask) {
  Block& b = block();
  arrive_and_wait(b, checked_warp(b, mask, "__syncwarp").barrier);
}

void warp_exchange(unsigned mask, const void* in, void* out, size_t size, int src_lane) {
  Block& b = block();
  Warp& w = checked_warp(b, mask, "warp shuffle");
  const int lane = b.current->lane;
  std::memcpy(w.slots[lane], in, size);
  arrive_and_wait(b, w.barrier);  // every lane has published its value
  const bool readable = src_lane >= 0 && src_lane < kWarp && (w.present >> src_lane & 1u);
  std::memcpy(out, readable ? w.slots[src_lane] : w.slots[lane], size);
  arrive_and_wait(b, w.barrier);  // every lane has read before any slot is overwritten
}

void run_grid(dim3 grid, dim3 block_dim, size_t dynamic_smem, const std::function<void()>& body, const char* name) {
  const uint64_t threads = uint64_t(block_dim.x) * block_dim.y * block_dim.z;
  const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z;
  // The limits a real launch fails on (cudaErrorInvalidConfiguration and friends).
  TORCH_CHECK(threads >= 1 && threads <= 1024 && block_dim.z <= 64, "fastgan emu: invalid block ", coords(block_dim),
              " (1 to 1024 threads, z <= 64) in ", name);
  TORCH_CHECK(blocks >= 1 && grid.x < (1u << 31) && grid.y <= 65535 && grid.z <= 65535, "fastgan emu: invalid grid ",
              coords(grid), " in ", name);
  TORCH_CHECK(dynamic_smem <= device_props().sharedMemPerBlock, "fastgan emu: ", dynamic_smem,
              " bytes of dynamic shared memory exceed the ", device_props().sharedMemPerBlock, "-byte limit in ", name);
  TORCH_CHECK(tls_block == nullptr, "fastgan emu: a kernel launched another kernel");
  const uint64_t launch = g_launches.fetch_add(1);
  g_blocks += blocks;
  g_threads += blocks * threads;
  uint64_t rng = g_seed.load() ^ (launch * 0xd1b54a32d192ed03ull);

  Block b;
  b.dim = block_dim;
  b.grid = grid;
  b.body = &body;
  b.fibers.resize(threads);
  b.warps.resize((threads + kWarp - 1) / kWarp);
  // Blocks run in a random order too: a result must not depend on which block finishes last.
  std::vector<uint64_t> order(blocks);
  std::iota(order.begin(), order.end(), 0);
  for (uint64_t i = blocks - 1; i > 0; --i) std::swap(order[i], order[splitmix(rng) % (i + 1)]);
  tls_block = &b;
  for (uint64_t linear : order) {
    b.idx = dim3(unsigned(linear % grid.x), unsigned(linear / grid.x % grid.y), unsigned(linear / grid.x / grid.y));
    b.serial = ++tls_blocks_run;
    b.barrier = Barrier{int(threads), 0, 0, -1};
    for (size_t w = 0; w < b.warps.size(); ++w) {
      const int lanes = int(std::min<uint64_t>(kWarp, threads - w * kWarp));
      b.warps[w].barrier = Barrier{lanes, 0, 0, int(w)};
      b.warps[w].present = lanes == kWarp ? 0xffffffffu : ((1u << lanes) - 1);
    }
    for (uint64_t t = 0; t < threads; ++t) {
      Fiber& f = b.fibers[t];
      f = Fiber();
      f.idx = dim3(unsigned(t % block_dim.x), unsigned(t / block_dim.x % block_dim.y),
                   unsigned(t / block_dim.x / block_dim.y));
      f.lane = int(t % kWarp);
      f.warp = int(t / kWarp);
    }
    run_block(b, rng);
    if (!b.error.empty()) {
      tls_block = nullptr;
      TORCH_CHECK(false, "fastgan emu: block ", coords(b.idx), " of ", name, ": ", b.error);
    }
  }
  tls_block = nullptr;
  g_shared_requests += b.shared.requests;
  g_shared_wavefronts += b.shared.wavefronts;
  for (uint64_t seen = g_finish_rounds.load(); seen < b.finish_rounds;)
    if (g_finish_rounds.compare_exchange_weak(seen, b.finish_rounds)) break;
  const std::lock_guard<std::mutex> lock(g_log_mutex);
  g_shared_log.push_back(b.shared);
  if (g_shared_log.size() > kSharedLog) g_shared_log.pop_front();
}

}  // namespace emu
}  // namespace fastgan
