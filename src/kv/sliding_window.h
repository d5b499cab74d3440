// window_view: the attention step of a sliding-window layer, from the step every layer shares.
//
// A windowed layer lets a query row at absolute position p see the keys at p - window_left .. p
// (AttentionShape::window_left). Positions come from the step itself: a request's levels are
// consecutive stretches of its sequence (shared levels in order, then its own level), so a row's
// position is the length of its shared entries plus its place in its own entry.
//
// Per request, walking its shared entries in order:
//   - an entry wholly before the window of every row of the request is dropped (not read);
//   - a shared entry is kept as a shared level only when it lies wholly inside the windows of
//     every row of all its sharers and no sharer has folded an earlier level (so kept levels
//     need no mask and every sharer keeps the same entries);
//   - otherwise the request folds it: its pages, and those of every later level of the request,
//     move into the request's own entry, in sequence order;
// and the own entry is then cut: leading pages wholly before the window of the request's first
// row are dropped. The own entry stays a contiguous tail of the sequence, so the backend's mask
// (relative to the entry's end) is exact on it. Levels left with no pages at all are removed.
// The own level keeps its order, rows and append slots: the step's K/V still goes where the
// original step puts it. Nothing is copied; the result names the same pages.
#pragma once
#include "kv/paged_kv.h"

namespace nc {

// window_left < 0: the step as it is. Throws nc::Error on a step whose levels do not cover its
// rows as the cascade planner lays them out (kv/cascade_planner.h).
AttentionStep window_view(const AttentionStep& step, int window_left, int page_size);

}  // namespace nc
