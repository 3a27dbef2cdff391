// BufferedFlush: Spring's ConcurrentWebSocketSessionDecorator, modelled step for step. Each
// session has a buffer. A sender appends to it, then tries the session's flush lock: the
// winner writes everything it finds in the buffer, its own message and other threads', and
// loops while more arrives; a loser checks the send-time and buffer-size limits and returns
// at once, leaving its message to the winner. The limits are checked only there, when a
// send arrives while another is in progress. The winner writes the buffer one message per
// socket write: the decorator's flush loop calls delegate.sendMessage once per message.
//
// What is kept from the Java: the buffer is a LinkedBlockingQueue (two locks, an atomic
// count, a node allocated per message, the take lock taken to signal when the queue becomes
// non-empty); bufferSize is an atomic; sendStartTime is read from the clock around every
// write; flushLock and closeLock are only ever tried. The atomics are sequentially
// consistent, as Java volatiles and locks are: the loop that rechecks the buffer after
// unlocking relies on it so no message is stranded. Overflow is TERMINATE, Spring's default;
// a session over a limit stops sending, as after the SessionLimitExceededException.
//
// Thread contract: send() from any thread; the constructor, wait_delivered() and the
// readers from the benchmark thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "bench/micro/strategies/sink.hpp"
#include "dispatcher/payload.hpp"

namespace shardcast::bench {
namespace detail {

// java.util.concurrent.LinkedBlockingQueue, unbounded, with the operations the decorator
// uses: add (offer), poll and isEmpty.
class TwoLockQueue {
public:
    TwoLockQueue() : head_(new Node), tail_(head_) {}
    TwoLockQueue(const TwoLockQueue&) = delete;
    TwoLockQueue& operator=(const TwoLockQueue&) = delete;
    ~TwoLockQueue() {
        while (head_ != nullptr) {
            Node* next = head_->next.load(std::memory_order_relaxed);
            delete head_;
            head_ = next;
        }
    }

    void add(dispatcher::Payload payload) {
        Node* node = new Node{std::move(payload)};
        std::int64_t before = 0;
        {
            std::lock_guard lock(put_mutex_);
            tail_->next.store(node, std::memory_order_release);
            tail_ = node;
            before = count_.fetch_add(1);
        }
        // signalNotEmpty(): the producer that made the queue non-empty takes the take lock
        // to wake a blocked taker. The decorator never blocks, but it pays for the lock.
        if (before == 0) {
            std::lock_guard lock(take_mutex_);
        }
    }

    bool poll(dispatcher::Payload& out) {
        if (count_.load() == 0) {
            return false;
        }
        std::lock_guard lock(take_mutex_);
        if (count_.load() == 0) {
            return false;
        }
        // The first node is a dummy; the node after it becomes the new dummy.
        Node* first = head_->next.load(std::memory_order_acquire);
        delete head_;
        head_ = first;
        out = std::move(first->payload);
        count_.fetch_sub(1);
        return true;
    }

    bool empty() const { return count_.load() == 0; }

private:
    struct Node {
        dispatcher::Payload payload;
        std::atomic<Node*> next{nullptr};
    };

    std::mutex put_mutex_;
    std::mutex take_mutex_;
    Node* head_;  // under take_mutex_
    Node* tail_;  // under put_mutex_
    std::atomic<std::int64_t> count_{0};
};

// A ReentrantLock used only through tryLock() and unlock(), as flushLock and closeLock are
// on the send path: a volatile state word and a compare-and-set.
class TryLock {
public:
    bool try_lock() {
        bool expected = false;
        return !locked_.load() && locked_.compare_exchange_strong(expected, true);
    }
    void unlock() { locked_.store(false); }

private:
    std::atomic<bool> locked_{false};
};

}  // namespace detail

// sendTimeLimit and bufferSizeLimit; the defaults are shardcast's own send_time_limit and
// buffer_limit, so both sides give up on a session at the same point.
struct FlushLimits {
    std::chrono::milliseconds send_time_limit{10'000};
    std::int64_t buffer_size_limit = 1024 * 1024;  // bytes
};

class BufferedFlush {
public:
    using Limits = FlushLimits;

    BufferedFlush(Sinks& sinks, const std::vector<std::string>& ids, Limits limits = {}) {
        for (std::size_t i = 0; i < ids.size(); ++i) {
            Decorator& d = decorators_.emplace_back(sinks[i], limits);
            sessions_.emplace(ids[i], &d);
        }
    }

    void send(std::string_view id, const dispatcher::Payload& payload) {
        sessions_.find(id)->second->send_message(payload);
    }

    // Whichever sender won the flush lock wrote every message before returning, and the
    // recheck after unlocking leaves none behind: nothing is left once the senders return.
    void wait_delivered(std::uint64_t) {}

    // Sessions that exceeded a limit (Spring would have thrown and closed them).
    std::uint64_t limit_exceeded() const {
        std::uint64_t n = 0;
        for (const Decorator& d : decorators_) n += d.limit_exceeded() ? 1 : 0;
        return n;
    }

private:
    class alignas(64) Decorator {
    public:
        Decorator(Sink& sink, Limits limits) : sink_(sink), limits_(limits) {}

        // sendMessage(). A false return stands for SessionLimitExceededException.
        bool send_message(const dispatcher::Payload& message) {
            if (should_not_send()) {
                return true;
            }
            buffer_.add(message);
            buffer_size_.fetch_add(static_cast<std::int64_t>(message->size()));
            do {
                if (!try_flush_message_buffer()) {
                    // Another send is in progress: it will write ours. Return at once.
                    return check_session_limits();
                }
            } while (!buffer_.empty() && !should_not_send());
            return true;
        }

        bool limit_exceeded() const { return limit_exceeded_.load(); }

    private:
        bool should_not_send() const { return limit_exceeded_.load(); }

        bool try_flush_message_buffer() {
            if (!flush_lock_.try_lock()) {
                return false;
            }
            dispatcher::Payload message;
            while (buffer_.poll(message) && !should_not_send()) {
                buffer_size_.fetch_sub(static_cast<std::int64_t>(message->size()));
                send_start_time_.store(now_ms());
                sink_.write(*message);
                send_start_time_.store(0);
            }
            send_start_time_.store(0);
            flush_lock_.unlock();
            return true;
        }

        bool check_session_limits() {
            if (should_not_send() || !close_lock_.try_lock()) {
                return true;
            }
            bool ok = true;
            if (time_since_send_started() > limits_.send_time_limit.count() ||
                buffer_size_.load() > limits_.buffer_size_limit) {
                limit_exceeded_.store(true);
                ok = false;
            }
            close_lock_.unlock();
            return ok;
        }

        std::int64_t time_since_send_started() const {
            const std::int64_t start = send_start_time_.load();
            return start > 0 ? now_ms() - start : 0;
        }

        // System.currentTimeMillis(), on the steady clock.
        static std::int64_t now_ms() {
            return std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                .count();
        }

        Sink& sink_;
        const Limits limits_;
        detail::TwoLockQueue buffer_;
        std::atomic<std::int64_t> buffer_size_{0};
        std::atomic<std::int64_t> send_start_time_{0};
        std::atomic<bool> limit_exceeded_{false};
        detail::TryLock flush_lock_;
        detail::TryLock close_lock_;
    };

    std::deque<Decorator> decorators_;
    IdMap<Decorator> sessions_;
};

}  // namespace shardcast::bench
