// SinkSession: a dispatcher Session whose "socket" is memory. It takes each batch when the
// session has one, and the write completes on the next turn of the shard's loop (or when
// released, in hold mode). It records what it was sent
// and counts overlapping writes, which the one-writer rule says must never happen.
//
// Thread contract: the Session side runs on the shard thread; the accessors used by tests
// (received(), violations(), close_code(), ...) are safe from any thread.
#pragma once

#include <atomic>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dispatcher/session.hpp"
#include "dispatcher/shard.hpp"

namespace shardcast::test {

class SinkSession : public dispatcher::Session {
public:
    SinkSession(dispatcher::Shard& shard, std::string client_id, bool hold_writes = false)
        : Session(shard, std::move(client_id)), hold_writes_(hold_writes) {}

    // Attaches a new session on its shard's thread and opens it; returns once done.
    static std::shared_ptr<SinkSession> open(dispatcher::Shard& shard,
                                             std::string client_id,
                                             bool hold_writes = false) {
        auto session = attach(shard, std::move(client_id), hold_writes);
        session->finish_handshake();
        return session;
    }

    // Attaches a new session whose upgrade has not finished yet; returns once attached.
    static std::shared_ptr<SinkSession> attach(dispatcher::Shard& shard,
                                               std::string client_id,
                                               bool hold_writes = false) {
        auto session = std::make_shared<SinkSession>(shard, std::move(client_id), hold_writes);
        std::promise<void> done;
        boost::asio::post(shard.io_context(), [&] {
            session->attach_result_ = shard.attach(session);
            session->attached_ = session->attach_result_ == dispatcher::Shard::Attach::attached;
            done.set_value();
        });
        done.get_future().wait();
        return session;
    }

    // Attaches a new session and asks the shard for what its client missed after offset
    // since in epoch, in one handler as the transport does, then opens it; returns once done.
    static std::shared_ptr<SinkSession> open_resumed(dispatcher::Shard& shard,
                                                     std::string client_id,
                                                     std::uint64_t since,
                                                     std::string epoch) {
        auto session = std::make_shared<SinkSession>(shard, std::move(client_id));
        std::promise<void> done;
        boost::asio::post(shard.io_context(), [&] {
            session->attach_result_ = shard.attach(session);
            session->attached_ = session->attach_result_ == dispatcher::Shard::Attach::attached;
            if (session->attached_) shard.resume(*session, since, epoch);
            done.set_value();
        });
        done.get_future().wait();
        session->finish_handshake();
        return session;
    }

    // The upgrade completes (as Beast's accept handler would report); returns once done.
    void finish_handshake() {
        std::promise<void> done;
        boost::asio::post(shard().io_context(), [&] {
            if (attached_) on_open();
            done.set_value();
        });
        done.get_future().wait();
    }

    std::vector<std::string> received() const {
        std::lock_guard lock(mutex_);
        return received_;
    }
    // The offset of each message received, in order.
    std::vector<std::uint64_t> offsets() const {
        std::lock_guard lock(mutex_);
        return offsets_;
    }
    // The gaps resumes told of, in order.
    std::vector<dispatcher::GapReason> gaps() const {
        std::lock_guard lock(mutex_);
        return gaps_;
    }
    std::vector<const std::string*> received_addresses() const {
        std::lock_guard lock(mutex_);
        return addresses_;
    }
    std::size_t received_count() const {
        std::lock_guard lock(mutex_);
        return received_.size();
    }
    int violations() const { return violations_.load(); }
    // Messages per write, in write order.
    std::vector<std::size_t> writes() const {
        std::lock_guard lock(mutex_);
        return writes_;
    }
    // Before the first write: how many messages one write may carry, like a corking transport.
    void set_batch(std::size_t batch) { batch_.store(batch); }
    // From now on a ping fails inside start_ping(), as a WebSocket connection's does when the
    // system call fails at once (a reset peer): the session learns of it before the call returns.
    void fail_pings_at_once() { fail_pings_.store(true); }
    int close_code() const { return close_code_.load(); }
    // What the shard answered attach() (attached, too_many, stopping); read once attach()
    // or open() has returned. (Test hook.)
    dispatcher::Shard::Attach attach_result() const { return attach_result_; }
    // How many messages had been taken for writing when the close frame was started: the
    // messages written ahead of an announced close. -1 until a close starts. (Test hook.)
    int received_at_close() const { return received_at_close_.load(); }
    // Sets the session's token expiry on the shard thread, as the transport does before it
    // attaches a session or when a refresh moves it; returns once set. (Test hook.)
    void expire_at(dispatcher::Clock::time_point when) {
        std::promise<void> done;
        boost::asio::post(shard().io_context(), [&] {
            set_expiry(when);
            done.set_value();
        });
        done.get_future().wait();
    }
    // Asks the session for a batch now, on the shard thread, as a transport that broke the
    // one-writer rule would, and returns the count take_batch() handed out (0: none). What it
    // hands out is not recorded, written or settled. (Test hook.)
    std::size_t take_batch_now() {
        std::promise<std::size_t> count;
        boost::asio::post(shard().io_context(), [&] { count.set_value(take_batch()); });
        return count.get_future().get();
    }
    bool aborted() const { return aborted_.load(); }
    bool gone() const { return state() == State::closed; }  // read only after shard quiesces

    // Hold mode: completes the write in flight (if any) from the shard thread.
    void release_one() {
        boost::asio::post(shard().io_context(), [self = self()] {
            if (self->held_) {
                self->held_ = false;
                self->complete();
            }
        });
    }
    // Hold mode: stop holding; the write in flight and all later ones complete.
    void release_all() {
        boost::asio::post(shard().io_context(), [self = self()] {
            self->hold_writes_ = false;
            if (self->held_) {
                self->held_ = false;
                self->complete();
            }
        });
    }
    // The client sends one frame, as a completed read would report it.
    void client_sends(std::string text) {
        boost::asio::post(shard().io_context(),
                          [self = self(), text = std::move(text)] { self->on_frame(text, {}); });
    }
    // Simulates a client that stopped answering: the session hears nothing from now on.
    bool socket_open() const override { return !aborted_.load(); }

private:
    std::shared_ptr<SinkSession> self() {
        return std::static_pointer_cast<SinkSession>(shared_from_this());
    }

    // The session says messages wait only while none is in flight: anything else breaks the
    // one-writer rule.
    void data_ready() override {
        if (writing_.load()) {
            ++violations_;
        }
        write();
    }

    // Takes the next batch, up to batch messages (1 unless set_batch() says otherwise), and
    // records it; it completes on the next turn of the loop, or when released in hold mode.
    void write() {
        if (writing_.load()) {
            return;
        }
        const std::size_t count = take_batch();
        if (count == 0) {
            return;
        }
        writing_.store(true);
        {
            std::lock_guard lock(mutex_);
            for (std::size_t i = 0; i < count; ++i) {
                received_.push_back(in_flight(i).text());
                offsets_.push_back(in_flight_offset(i));
                addresses_.push_back(&in_flight(i).text());
            }
            writes_.push_back(count);
        }
        if (hold_writes_) {
            held_ = true;
            return;
        }
        boost::asio::post(shard().io_context(), [self = self()] { self->complete(); });
    }

    void complete() {
        writing_.store(false);
        batch_written(true);
        write();
    }
    std::size_t max_batch() const override { return batch_.load(); }
    void start_ping() override {
        if (fail_pings_.load()) {
            on_ping_done(false);
            return;
        }
        boost::asio::post(shard().io_context(), [self = self()] { self->on_ping_done(true); });
    }
    // Like a real connection, the batch that goes out ahead of an announced close is taken
    // first.
    void start_close(std::uint16_t code, std::string_view) override {
        write();
        {
            std::lock_guard lock(mutex_);
            received_at_close_.store(static_cast<int>(received_.size()));
        }
        close_code_.store(code);
        boost::asio::post(shard().io_context(), [self = self()] { self->finish_close(); });
    }
    void abort() override { aborted_.store(true); }
    void notify_gap(dispatcher::GapReason reason, std::uint64_t, std::string_view) override {
        std::lock_guard lock(mutex_);
        gaps_.push_back(reason);
    }

    bool hold_writes_;
    bool attached_ = false;
    dispatcher::Shard::Attach attach_result_ = dispatcher::Shard::Attach::stopping;
    bool held_ = false;
    std::atomic<bool> writing_{false};
    std::atomic<int> violations_{0};
    std::atomic<int> close_code_{0};
    std::atomic<int> received_at_close_{-1};
    std::atomic<bool> aborted_{false};
    std::atomic<bool> fail_pings_{false};
    mutable std::mutex mutex_;
    std::vector<std::string> received_;
    std::vector<std::uint64_t> offsets_;
    std::vector<dispatcher::GapReason> gaps_;
    std::vector<const std::string*> addresses_;
    std::vector<std::size_t> writes_;
    std::atomic<std::size_t> batch_{1};
};

}  // namespace shardcast::test
