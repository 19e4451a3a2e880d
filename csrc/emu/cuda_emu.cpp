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

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <c10/util/Exception.h>

#if defined(__x86_64__)
// switch_context(save, next): saves the callee-saved registers and the floating-point
// control words on the current stack, stores the stack pointer in *save, and resumes the
// context whose stack pointer is `next`. fiber_start is where a new fiber's first switch
// returns to: it calls r13(r12) with a correctly aligned stack.
extern "C" void fastgan_emu_switch(void** save, void* next);
extern "C" void fastgan_emu_fiber_start();
asm(R"(
  .text
  .p2align 4
  .globl fastgan_emu_switch
  .hidden fastgan_emu_switch
  .type fastgan_emu_switch, @function
fastgan_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size fastgan_emu_switch, .-fastgan_emu_switch

  .p2align 4
  .globl fastgan_emu_fiber_start
  .hidden fastgan_emu_fiber_start
  .type fastgan_emu_fiber_start, @function
fastgan_emu_fiber_start:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size fastgan_emu_fiber_start, .-fastgan_emu_fiber_start
)");
#else
#include <ucontext.h>
#endif

namespace fastgan {
namespace emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr int kWarp = 32;

// One fiber stack with an inaccessible page below it, so an overflow faults at once
// instead of corrupting the neighbouring fiber.
struct Stack {
  void* base = nullptr;  // the guard page
  size_t bytes = 0;
  Stack() {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    bytes = kStackBytes + page;
    base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TORCH_CHECK(base != MAP_FAILED, "fastgan emu: cannot allocate a fiber stack");
    mprotect(base, page, PROT_NONE);
  }
  ~Stack() { munmap(base, bytes); }
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  char* top() const { return static_cast<char*>(base) + bytes; }
};

struct Barrier {
  int expected = 0, arrived = 0;
  uint64_t generation = 0;
  void release() {
    arrived = 0;
    ++generation;
  }
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
  const uint64_t* waiting_on = nullptr;  // a barrier's generation, while waiting at it
  uint64_t waiting_since = 0;
};

struct Warp {
  Barrier barrier;
  unsigned present = 0;  // lanes that exist and have not exited
  alignas(16) unsigned char slots[kWarp][16];
};

struct Block {
  dim3 idx, dim, grid;
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  Barrier barrier;
  std::vector<unsigned char> smem;
  const std::function<void()>* body = nullptr;
  Fiber* current = nullptr;
#if defined(__x86_64__)
  void* scheduler_sp = nullptr;
#else
  ucontext_t scheduler;
#endif
  std::string error;  // the first problem found in this block
  void fail(const std::string& message) {
    if (error.empty()) error = message;
  }
};

thread_local Block* tls_block = nullptr;
thread_local std::vector<std::unique_ptr<Stack>> tls_stacks;

std::atomic<uint64_t> g_seed{0x9e3779b97f4a7c15ull};
std::atomic<uint64_t> g_launches{0}, g_blocks{0}, g_threads{0};

Block& block() {
  TORCH_CHECK(tls_block != nullptr, "fastgan emu: a CUDA built-in was used outside a kernel launch");
  return *tls_block;
}

std::string coords(const dim3& d) {
  std::ostringstream s;
  s << "(" << d.x << ", " << d.y << ", " << d.z << ")";
  return s.str();
}

void to_scheduler(Block& b, Fiber& f) {
#if defined(__x86_64__)
  fastgan_emu_switch(&f.sp, b.scheduler_sp);
#else
  swapcontext(&f.context, &b.scheduler);
#endif
}

void to_fiber(Block& b, Fiber& f) {
  b.current = &f;
#if defined(__x86_64__)
  fastgan_emu_switch(&b.scheduler_sp, f.sp);
#else
  swapcontext(&b.scheduler, &f.context);
#endif
  b.current = nullptr;
}

// Arrive at `barrier`; return once every expected thread has arrived.
void arrive_and_wait(Block& b, Barrier& barrier) {
  Fiber& f = *b.current;
  const uint64_t generation = barrier.generation;
  if (++barrier.arrived >= barrier.expected) {
    barrier.release();
    return;
  }
  f.waiting_on = &barrier.generation;
  f.waiting_since = generation;
  to_scheduler(b, f);
  f.waiting_on = nullptr;
}

// A thread that returns no longer counts at barriers (as on Volta and later GPUs).
void leave(Barrier& barrier) {
  --barrier.expected;
  if (barrier.arrived > 0 && barrier.arrived >= barrier.expected) barrier.release();
}

void fiber_main(void*) {
  Block& b = *tls_block;
  (*b.body)();
  Fiber& f = *b.current;
  f.done = true;
  leave(b.barrier);
  Warp& w = b.warps[f.warp];
  w.present &= ~(1u << f.lane);
  leave(w.barrier);
  to_scheduler(b, f);
  std::abort();  // a finished fiber is never resumed
}

#if !defined(__x86_64__)
void fiber_trampoline() { fiber_main(nullptr); }
#endif

void start_fiber(Block& b, Fiber& f, Stack& stack) {
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
  f.context.uc_stack.ss_sp = static_cast<char*>(stack.base) + (stack.bytes - kStackBytes);
  f.context.uc_stack.ss_size = kStackBytes;
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
}

}  // namespace

DeviceProps& device_props() {
  static DeviceProps props;
  return props;
}

void set_seed(uint64_t seed) { g_seed = seed; }
Stats stats() { return {g_launches.load(), g_blocks.load(), g_threads.load()}; }

const dim3& thread_idx() { return block().current->idx; }
const dim3& block_idx() { return block().idx; }
const dim3& block_dim() { return block().dim; }
const dim3& grid_dim() { return block().grid; }
unsigned char* dynamic_shared_memory() { return block().smem.data(); }
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
  TORCH_CHECK(threads >= 1 && threads <= 1024 && block_dim.z <= 64,
              "fastgan emu: invalid block ", coords(block_dim), " (1 to 1024 threads, z <= 64) in ", name);
  TORCH_CHECK(blocks >= 1 && grid.x < (1u << 31) && grid.y <= 65535 && grid.z <= 65535,
              "fastgan emu: invalid grid ", coords(grid), " in ", name);
  TORCH_CHECK(dynamic_smem <= device_props().sharedMemPerBlock, "fastgan emu: ", dynamic_smem,
              " bytes of dynamic shared memory exceed the ", device_props().sharedMemPerBlock, "-byte limit in ",
              name);
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
    b.barrier = Barrier{int(threads), 0, 0};
    for (size_t w = 0; w < b.warps.size(); ++w) {
      const int lanes = int(std::min<uint64_t>(kWarp, threads - w * kWarp));
      b.warps[w].barrier = Barrier{lanes, 0, 0};
      b.warps[w].present = lanes == kWarp ? 0xffffffffu : ((1u << lanes) - 1);
    }
    // Uninitialised shared memory reads as NaN (all bits set), not as a convenient zero.
    b.smem.assign(dynamic_smem + 16, 0xff);
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
}

}  // namespace emu
}  // namespace fastgan
