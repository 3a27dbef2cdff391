// ShardcastPath: the real Dispatcher, Inbox, Shard and Session, with each session's socket
// replaced by a Sink. A producer's send only enqueues into the shard's inbox; the shard
// thread delivers, and the session writes one message at a time.
//
// SinkWriteSession is the lean transport under it: start_write() performs the write on the
// shard thread, as a socket's speculative write does, and completes it through the shard's
// io_context, as the socket's completion handler would. It checks the one-write-in-flight
// rule itself and reports a breach to the sink's violation count.
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

    // One message per write (the default max_batch): the sink models one send per message.
    void start_write(std::size_t) override {
        if (writing_) {
            sink_.flag_violation();
        }
        writing_ = true;
        sink_.write(*in_flight(0));
        boost::asio::post(shard().io_context(), [self = self()] {
            self->writing_ = false;
            self->on_write_done(true);
        });
    }
    void start_ping() override {
        boost::asio::post(shard().io_context(), [self = self()] { self->on_ping_done(true); });
    }
    void start_close(std::uint16_t, std::string_view) override {
        boost::asio::post(shard().io_context(), [self = self()] { self->finish_close(); });
    }
    void abort() override {}

    Sink& sink_;
    bool writing_ = false;  // shard thread only
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
