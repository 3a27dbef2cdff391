// wait_until: the one way integration tests wait for something another thread or process
// does. Polls, so the predicate needs no notification hook; any thread may call it.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace shardcast::test {

// Polls pred every 2 ms until it holds or the timeout passes, and returns its last value.
// Use it as ASSERT_TRUE(wait_until(...)) << "what never happened", never as a sleep.
inline bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            // One last look, so a predicate that came true during the final sleep counts.
            return pred();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
}

}  // namespace shardcast::test
