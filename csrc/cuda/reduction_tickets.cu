// The zeroed ticket counters of the kernels that finish a reduction in their last block
// (BatchNorm, bias_act's backward, the losses): common.cuh declares reduction_tickets.
#include <algorithm>
#include <map>
#include <mutex>
#include <utility>

#include "common.cuh"

namespace fastgan {
namespace cuda {

// The ticket counters of the current stream: zeroed once, then left at zero by every
// reduction. Launches on one stream run one after another, so they never share them at the
// same time. The buffer grows (a new zeroed one; the old one is freed in stream order) when a
// launch needs more counters than it holds. A graph being captured gets counters of its own,
// zeroed inside the graph: persistent ones would be shared with whatever stream the graph is
// later replayed on. Streams are told apart by stream_key, never by handle; a stream that is
// destroyed leaves its counters behind (256 bytes; torch's own streams are never destroyed).
at::Tensor reduction_tickets(const at::Tensor& like, int64_t count) {
  const auto options = like.options().dtype(at::kInt);
  if (stream_is_capturing()) return at::zeros({count}, options);
  static std::mutex mutex;
  static auto* tickets = new std::map<std::pair<int64_t, uint64_t>, at::Tensor>();  // never freed: see above
  const std::lock_guard<std::mutex> lock(mutex);
  at::Tensor& ticket = (*tickets)[{like.device().index(), stream_key(current_stream())}];
  if (!ticket.defined() || ticket.numel() < count) ticket = at::zeros({std::max<int64_t>(count, 64)}, options);
  return ticket;
}

}  // namespace cuda
}  // namespace fastgan
