// ConnectionLimits: how many WebSocket sessions the server holds, in all and per client
// address, and the slot each session holds for its lifetime. Checked before the upgrade, so
// a refused client costs a request, not a session.
//
// Thread contract: acquire() from any HTTP thread; a Slot is released from whichever thread
// destroys it (a shard's). The total is an atomic; the per-address counts sit behind a
// mutex taken once per connect and once per disconnect, never per message.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/ip/address.hpp>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace shardcast::transport {

class ConnectionLimits {
public:
    // 0 means no limit.
    ConnectionLimits(std::size_t max_total, std::size_t max_per_address)
        : max_total_(max_total), max_per_address_(max_per_address) {}
    ConnectionLimits(const ConnectionLimits&) = delete;
    ConnectionLimits& operator=(const ConnectionLimits&) = delete;

    // A session's place: released when destroyed. Empty when refused.
    class Slot {
    public:
        Slot() = default;
        Slot(Slot&& other) noexcept;
        Slot& operator=(Slot&& other) noexcept;
        ~Slot();
        explicit operator bool() const { return owner_ != nullptr; }

    private:
        friend class ConnectionLimits;
        Slot(ConnectionLimits* owner, const boost::asio::ip::address& address)
            : owner_(owner), address_(address) {}
        void release();

        ConnectionLimits* owner_ = nullptr;
        boost::asio::ip::address address_;
    };

    enum class Verdict : unsigned char { admitted, server_full, address_full };
    struct Grant {
        Verdict verdict;
        Slot slot;
    };
    Grant acquire(const boost::asio::ip::address& address);

    std::size_t total() const { return total_.load(std::memory_order_relaxed); }
    std::size_t max_total() const { return max_total_; }
    std::size_t max_per_address() const { return max_per_address_; }

private:
    using Key = std::array<unsigned char, 16>;  // the address as IPv6 bytes
    struct KeyHash {
        std::size_t operator()(const Key& key) const;
    };
    static Key key_of(const boost::asio::ip::address& address);
    void release(const boost::asio::ip::address& address);

    const std::size_t max_total_;
    const std::size_t max_per_address_;
    std::atomic<std::size_t> total_{0};
    std::mutex mutex_;
    std::unordered_map<Key, std::uint32_t, KeyHash> per_address_;
};

}  // namespace shardcast::transport
