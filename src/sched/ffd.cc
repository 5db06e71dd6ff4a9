#include "sched/ffd.h"

#include <algorithm>
#include <functional>

namespace gpufrac::sched {

int FirstFitDecreasingBins(std::vector<int64_t> items, int64_t capacity) {
  if (items.empty()) return 0;
  std::sort(items.begin(), items.end(), std::greater<>());
  // At most one bin per item; leaves hold each bin's room, inner nodes the max of their children.
  size_t leaves = 1;
  while (leaves < items.size()) leaves *= 2;
  std::vector<int64_t> tree(2 * leaves, capacity);
  int used = 0;
  for (int64_t item : items) {
    size_t node = 1;
    while (node < leaves) node = tree[2 * node] >= item ? 2 * node : 2 * node + 1;
    const int bin = static_cast<int>(node - leaves);
    if (tree[node] == capacity) used = std::max(used, bin + 1);
    tree[node] -= item;
    for (node /= 2; node >= 1; node /= 2) tree[node] = std::max(tree[2 * node], tree[2 * node + 1]);
  }
  return used;
}

}  // namespace gpufrac::sched
