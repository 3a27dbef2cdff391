// ShardcastPath: the real Dispatcher, Inbox, Shard and Session, with each session's socket
// replaced by a Sink. A producer's send only enqueues into the shard's inbox; the shard
// thread delivers, and the session keeps one write in flight.
//
// SinkWriteSession is the lean transport under it. Like the real transport
// (transport/ws_connection.cpp), it takes up to 256 queued messages per write, hands them to
// the sink as one gather write (one call for the batch) on the shard thread, and completes
// the write inside that call, as the transport does when the kernel takes a write whole. It
// checks the one-write-in-flight rule itself and reports a breach to the sink's violation
// count.
//
// Thread contract: send() from any thread; the constructor, wait_delivered() and the
// destructor from the benchmark thread. SinkWriteSession runs on its shard's thread.
#pragma once

#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "bench/micro/strategies/sink.hpp"
#include "dispatcher/dispatcher.hpp"
#include "dispatcher/session.hpp"
#include "dispatcher/shard.hpp"

namespace shardcast::bench {

class SinkWriteSession : public dispatcher::Session {
public:
    SinkWriteSession(dispatcher::Shard& shard, std::string client_id, Sink& sink)
        : Session(shard, std::move(client_id)), sink_(sink) {}

    // Shard thread: what a finished upgrade does.
    void attach_and_open() {
        if (shard().attach(shared_from_this()) == dispatcher::Shard::Attach::attached) {
            on_open();
        }
    }

    bool socket_open() const override { return true; }

private:
    std::shared_ptr<SinkWriteSession> self() {
        return std::static_pointer_cast<SinkWriteSession>(shared_from_this());
    }

    // The real transport's kMaxFramesPerWrite: a busy session's backlog goes out in batches.
    std::size_t max_batch() const override { return kMaxFramesPerWrite; }

    // Each batch as one call, as the transport's one sendmsg per batch, completed inside
    // the call as the transport's is when the kernel takes the whole write; the loop then
    // takes the next batch, as the transport's writer does.
    void data_ready() override {
        if (writing_) {
            sink_.flag_violation();
        }
        const auto keep_alive = self();
        while (const std::size_t batch = take_batch()) {
            writing_ = true;
            frames_.clear();
            for (std::size_t i = 0; i < batch; ++i) frames_.emplace_back(in_flight(i));
            sink_.write(frames_);
            writing_ = false;
            batch_written(true);
        }
    }
    void start_ping() override {
        boost::asio::post(shard().io_context(), [self = self()] { self->on_ping_done(true); });
    }
    void start_close(std::uint16_t, std::string_view) override {
        data_ready();  // the batch that goes out ahead of an announced close
        boost::asio::post(shard().io_context(), [self = self()] { self->finish_close(); });
    }
    void abort() override {}
    void notify_gap(dispatcher::GapReason, std::uint64_t, std::string_view) override {}

    static constexpr std::size_t kMaxFramesPerWrite = 256;

    Sink& sink_;
    bool writing_ = false;                  // shard thread only
    std::vector<std::string_view> frames_;  // the batch being written; kept for its capacity
};

class ShardcastPath {
public:
    ShardcastPath(Sinks& sinks,
                  const std::vector<std::string>& ids,
                  dispatcher::DispatcherConfig config = {})
        : dispatcher_(config) {
        dispatcher_.start();
        std::vector<std::vector<std::shared_ptr<SinkWriteSession>>> by_shard(
            dispatcher_.shard_count());
        for (std::size_t i = 0; i < ids.size(); ++i) {
            dispatcher::Shard& shard = dispatcher_.shard_for(ids[i]);
            sessions_.push_back(std::make_shared<SinkWriteSession>(shard, ids[i], sinks[i]));
            by_shard[shard.index()].push_back(sessions_.back());
        }
        // One post per shard attaches all of its sessions; returns once every shard is done.
        std::vector<std::future<void>> attached;
        for (std::size_t s = 0; s < by_shard.size(); ++s) {
            auto done = std::make_shared<std::promise<void>>();
            attached.push_back(done->get_future());
            boost::asio::post(dispatcher_.shard(s).io_context(),
                              [list = std::move(by_shard[s]), done] {
                                  for (const auto& session : list) session->attach_and_open();
                                  done->set_value();
                              });
        }
        for (auto& f : attached) f.wait();
    }
    ShardcastPath(const ShardcastPath&) = delete;
    ShardcastPath& operator=(const ShardcastPath&) = delete;
    ~ShardcastPath() { dispatcher_.stop(std::chrono::seconds(1)); }

    void send(std::string_view id, const dispatcher::Payload& payload) {
        dispatcher_.send(id, payload);
    }

    // Returns once the shards have settled total messages, written or failed. Polls with a
    // short sleep rather than a yield: on a small machine a spinning waiter takes the very
    // cores the shard threads need.
    void wait_delivered(std::uint64_t total) {
        while (settled() < total) {
            std::this_thread::sleep_for(std::chrono::microseconds(20));
        }
    }

    const dispatcher::Dispatcher& dispatcher() const { return dispatcher_; }

private:
    std::uint64_t settled() const {
        std::uint64_t n = 0;
        for (std::size_t i = 0; i < dispatcher_.shard_count(); ++i) {
            const dispatcher::ShardStats& stats = dispatcher_.shard(i).stats();
            n += stats.sent.load() + stats.failed_total();
        }
        return n;
    }

    dispatcher::Dispatcher dispatcher_;
    std::vector<std::shared_ptr<SinkWriteSession>> sessions_;
};

}  // namespace shardcast::bench
