// SequenceOrder: puts items numbered by a sequence back in order after a short, fixed hold.
//
// Why: the history stream's republished copies (the live delivery of stored messages) do not
// always arrive in stream order. nats-server 2.9 numbers and stores a message under the
// stream's lock and republishes it after letting go of it, so two messages stored at once
// from two nodes' connections can be republished the other way round. A client would see
// offset 37 before 36 and, leaving in between, resume from 37 past 36: a silent gap. Each
// item is held `window` after it arrives and released lowest sequence first, so an item
// overtaken by at most `window` goes back in its place. A window of zero releases at once.
// hold() says how an item arrived, so the owner can count how often the window is needed,
// and how often it was too short.
//
// Threads: hold() from any thread (the NATS delivery thread); release runs on this class's
// own thread, one item at a time, in sequence order. stop() from the owner, once.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace shardcast::transport {

// How an item arrived: after every item seen before it; overtaken, yet in time to be put
// back in its place; or after a higher sequence had been released (the window was too short).
enum class Arrival : unsigned char { in_order, overtaken, late };

template <class Item>
class SequenceOrder {
public:
    using Clock = std::chrono::steady_clock;
    using Release = std::function<void(Item, std::uint64_t sequence)>;

    SequenceOrder(std::chrono::milliseconds window, Release release)
        : window_(window), release_(std::move(release)) {
        if (window_.count() > 0) {
            thread_ = std::thread([this] { run(); });
        }
    }
    SequenceOrder(const SequenceOrder&) = delete;
    SequenceOrder& operator=(const SequenceOrder&) = delete;
    ~SequenceOrder() { stop(); }

    Arrival hold(Item item, std::uint64_t sequence) {
        std::unique_lock lock(mutex_);
        const Arrival arrival = sequence > highest_seen_       ? Arrival::in_order
                                : sequence > released_through_ ? Arrival::overtaken
                                                               : Arrival::late;
        highest_seen_ = std::max(highest_seen_, sequence);
        if (window_.count() == 0) {
            released_through_ = highest_seen_;
            lock.unlock();
            release_(std::move(item), sequence);
            return arrival;
        }
        held_.push_back(Held{sequence, Clock::now() + window_, std::move(item)});
        std::push_heap(held_.begin(), held_.end(), Later{});
        lock.unlock();
        wake_.notify_one();
        return arrival;
    }

    // Ends the release thread; what is still held is dropped, each handed to `dropped`.
    template <class Dropped>
    void stop(Dropped dropped) {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_one();
        if (thread_.joinable()) {
            thread_.join();
        }
        std::lock_guard lock(mutex_);
        for (Held& held : held_) {
            dropped(std::move(held.item));
        }
        held_.clear();
    }
    void stop() {
        stop([](Item&&) {});
    }

private:
    struct Held {
        std::uint64_t sequence;
        Clock::time_point due;
        Item item;
    };
    struct Later {
        bool operator()(const Held& a, const Held& b) const { return a.sequence > b.sequence; }
    };

    // Releases the lowest sequence once its hold is over: one that arrived late, with a later
    // due time, keeps the higher ones behind it until it goes.
    void run() {
        std::unique_lock lock(mutex_);
        while (!stopping_) {
            if (held_.empty()) {
                wake_.wait(lock);
                continue;
            }
            if (const Clock::time_point due = held_.front().due; Clock::now() < due) {
                wake_.wait_until(lock, due);
                continue;
            }
            std::pop_heap(held_.begin(), held_.end(), Later{});
            Held next = std::move(held_.back());
            held_.pop_back();
            released_through_ = std::max(released_through_, next.sequence);
            lock.unlock();
            release_(std::move(next.item), next.sequence);
            lock.lock();
        }
    }

    const std::chrono::milliseconds window_;
    const Release release_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::vector<Held> held_;  // a heap, the lowest sequence in front
    std::uint64_t highest_seen_ = 0;
    std::uint64_t released_through_ = 0;  // the highest sequence released
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace shardcast::transport
