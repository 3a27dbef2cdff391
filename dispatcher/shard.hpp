// Shard: one thread running its own io_context, the Inbox producers post into, and the
// sessions of the client ids that hash to it. The shard thread is the only thread that
// reads session state, writes to their sockets or closes them. Its definition is split by
// concern: shard.cpp (the data path), shard_sessions.cpp, shard_tick.cpp, shard_stop.cpp.
//
// Thread contract: start(), publish(), begin_stop(), wait_stopped(), join() and the const
// readers (stats(), queue_depth(), queue_delay()) are safe from any thread; everything else runs
// on the shard thread (asserted in debug builds).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dispatcher/arrivals.hpp"
#include "dispatcher/client_info.hpp"
#include "dispatcher/cluster_link.hpp"
#include "dispatcher/command.hpp"
#include "dispatcher/config.hpp"
#include "dispatcher/history.hpp"
#include "dispatcher/inbox.hpp"
#include "dispatcher/latency_histogram.hpp"
#include "dispatcher/outbound.hpp"
#include "dispatcher/publish_ack.hpp"
#include "dispatcher/queue_delay.hpp"
#include "dispatcher/removal_reason.hpp"
#include "dispatcher/shard_stats.hpp"

namespace shardcast::dispatcher {

class Session;

class Shard {
public:
    Shard(std::size_t index, const DispatcherConfig& config);
    Shard(const Shard&) = delete;
    Shard& operator=(const Shard&) = delete;
    ~Shard();

    std::size_t index() const { return index_; }
    boost::asio::io_context& io_context() { return io_context_; }
    const SessionConfig& config() const { return config_.session; }
    ShardStats& stats() { return stats_; }
    const ShardStats& stats() const { return stats_; }
    const LatencyHistogram& latency() const { return latency_; }
    // Commands published and not yet delivered: those in the inbox, and those a drain turn
    // has taken from it but not reached (up to 64Ki, each broadcast worth a delivery to
    // every session). Any thread; approximate while producers push.
    std::size_t queue_depth() const {
        return inbox_.size_approx() + static_cast<std::size_t>(stats_.collected.load());
    }
    // How long the oldest command published here and not yet delivered has waited at now,
    // zero when there is none: the time a publish accepted now would wait behind the
    // backlog, as near as one load can tell. Any thread.
    Clock::duration queue_delay(Clock::time_point now) const { return queue_delay_.age(now); }
    bool on_shard_thread() const { return executor_.running_in_this_thread(); }
    // The tick period: how often heartbeats, send limits and closing deadlines are checked.
    std::chrono::milliseconds tick_period() const { return tick_period_; }

    // Before start(): the cluster link, or none for a single node.
    void set_link(ClusterLink* link) {
        link_ = link;
        sequenced_ = link != nullptr && link->sequences();
    }
    ClusterLink* link() const { return link_; }

    // Any thread.
    void start();
    // Enqueues a command and wakes the shard if it is not already scheduled to drain.
    // Never blocks; false only if the queue could not allocate.
    bool publish(Command&& command);
    // Starts the graceful stop: deliver what is queued until the deadline, then close every
    // session with 1001. wait_stopped() returns once every session is closed.
    void begin_stop(Clock::time_point deadline);
    bool wait_stopped(Clock::time_point until);
    // Stops the io_context, joins the thread, and counts what never got delivered.
    void join();

    // Shard thread.
    enum class Attach : unsigned char { attached, too_many, stopping };
    // Adds a session under its client id, applying session.on_duplicate. Refused when the id
    // already has session.max_per_client sessions (allow mode) or the shard is stopping.
    Attach attach(std::shared_ptr<Session> session);
    // Removes a session from the map, counts the reason and starts closing it. Idempotent.
    void remove(Session& session, RemovalReason reason);
    void remove(Session& session, RemovalReason reason, std::uint16_t code, std::string_view text);
    // A closed session leaves the closing list.
    void forget(Session& session);
    // A session just attached asks for what its client missed: the messages after offset
    // since in epoch, or, from another epoch, all that is held, behind a gap notice when
    // some is gone. Queued ahead of anything delivered later, so the seam has no gap and no
    // duplicate. In a sequenced cluster the link looks in the stream and the session holds
    // what arrives meanwhile until the answer (finish_resume).
    void resume(Session& session, std::uint64_t since, std::string_view epoch);
    // This shard's epoch: the offsets of its stream mean something only within it. A new
    // one at every start.
    const std::string& epoch() const { return epoch_; }
    void record_latency(Clock::duration latency) { latency_.record(latency); }
    // The session has messages to write once this drain turn is over, or with
    // session.write_delay once the delay has passed.
    void request_write(std::shared_ptr<Session> session) {
        write_requests_.push_back(std::move(session));
    }
    ClientInfo lookup(std::string_view client_id) const;
    // One read buffer for every connection of the shard: a read handler uses it only until it
    // returns, and the shard thread runs one handler at a time, so an idle connection needs
    // no read buffer of its own.
    std::span<char> read_scratch();
    // One write buffer for every connection of the shard, on the same reasoning: a writer
    // lays out one system call's bytes in it and copies out whatever the kernel did not take
    // before it returns.
    static constexpr std::size_t kWriteScratchBytes = 256 * 1024;
    std::span<char> write_scratch();
    std::size_t session_count() const;

private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const {
            return std::hash<std::string_view>{}(s);
        }
    };
    using SessionList = std::vector<std::shared_ptr<Session>>;
    enum class Phase : unsigned char { running, draining, closing, stopped };

    void drain();
    void deliver(Command& command);
    void deliver_send(Command& command);
    void deliver_broadcast(const Command& command);
    void deliver_disconnect(const Command& command);
    void finish_resume(const Command& command);
    // The position a message delivered here stands at: the stream's in a sequenced cluster
    // (none for one that could not be stored), otherwise the next of this shard's.
    Position position_for(const Command& command);
    void deliver_to(const SessionList& sessions, const Outbound& message);
    void replace_older(const Command& claim);
    void remove_overflowed();
    void cut_slow_readers();
    // Whether this shard keeps history itself (a single node; a cluster's lives in the bus).
    bool keeps_history() const { return config_.history.enabled && link_ == nullptr; }
    void end_turn_writes();
    void flush_write_requests();
    void release_acks();
    void schedule_tick();
    void tick();
    void sweep();
    void advance_stop();
    bool all_idle() const;

    const std::size_t index_;
    const DispatcherConfig config_;
    // Declared first so it is destroyed last: sessions own sockets bound to it.
    boost::asio::io_context io_context_{1};
    boost::asio::io_context::executor_type executor_ = io_context_.get_executor();
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
    boost::asio::steady_timer tick_timer_;
    boost::asio::steady_timer stop_timer_;
    boost::asio::steady_timer write_delay_timer_;
    std::chrono::milliseconds tick_period_;
    Clock::time_point next_sweep_;
    std::thread thread_;
    ClusterLink* link_ = nullptr;
    bool sequenced_ = false;  // the link numbers messages: ClusterLink::sequences()

    Inbox inbox_;
    QueueDelay queue_delay_;  // when the backlog's oldest command was published
    ShardStats stats_;
    LatencyHistogram latency_;

    std::unordered_map<std::string, SessionList, Hash, std::equal_to<>> sessions_;
    std::unordered_map<Session*, std::shared_ptr<Session>> closing_;
    Arrivals arrivals_;  // taken from the inbox, in stamp order
    History history_{config_.history, stats_.history};
    const std::string epoch_ = new_epoch();
    std::uint64_t offset_ = 0;                          // the last offset given to a message
    std::vector<std::shared_ptr<Session>> overflowed_;  // removed after a delivery loop
    // Written at the end of the turn, or when write_delay_timer_ fires.
    std::vector<std::shared_ptr<Session>> write_requests_;
    bool write_delay_armed_ = false;  // write_requests_ wait for write_delay_timer_
    std::vector<std::shared_ptr<PublishAck>> taken_acks_;  // marked taken after the writes
    std::unique_ptr<char[]> read_scratch_;                 // allocated on the first read
    std::unique_ptr<char[]> write_scratch_;                // allocated on the first write

    Phase phase_ = Phase::running;
    Clock::time_point stop_deadline_{};
    std::promise<void> stopped_;
    std::future<void> stopped_future_ = stopped_.get_future();
};

}  // namespace shardcast::dispatcher
