// Resumable functions for the state machines (internal): a machine's resume()
// runs until it needs something done, returns that as an action, and on the
// next call continues after the point it returned from. Locals that live across
// a yield must be members. The same technique as asio::coroutine.
#pragma once

/// Opens the body of a resumable function; `state` is an int member, 0 at start.
#define CACHEASIDE_CORO_BEGIN(state) \
  switch (state) {                   \
    case 0:

/// Returns `action`; the next resume continues right after this line.
#define CACHEASIDE_CORO_YIELD(state, action) \
  do {                                       \
    state = __LINE__;                        \
    return action;                           \
    case __LINE__:;                          \
  } while (0)

/// Runs a nested machine inside this one: yields each action `next` returns
/// (stored in `action`) until it returns one whose step is `done`.
#define CACHEASIDE_CORO_YIELD_FROM(state, action, next, done) \
  for (;;) {                                                  \
    action = (next);                                          \
    if (action.step == (done)) break;                         \
    CACHEASIDE_CORO_YIELD(state, action);                     \
  }

/// Closes the body: a resume past the end lands here again.
#define CACHEASIDE_CORO_END(state) \
  [[fallthrough]];                 \
  default:                         \
    state = -1;                    \
    }
