#include "transport/connection_limits.hpp"

#include <string_view>
#include <utility>

namespace shardcast::transport {

ConnectionLimits::Slot::Slot(Slot&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), address_(other.address_) {}

ConnectionLimits::Slot& ConnectionLimits::Slot::operator=(Slot&& other) noexcept {
    if (this != &other) {
        release();
        owner_ = std::exchange(other.owner_, nullptr);
        address_ = other.address_;
    }
    return *this;
}

ConnectionLimits::Slot::~Slot() { release(); }

void ConnectionLimits::Slot::release() {
    if (owner_ != nullptr) {
        std::exchange(owner_, nullptr)->release(address_);
    }
}

std::size_t ConnectionLimits::KeyHash::operator()(const Key& key) const {
    return std::hash<std::string_view>{}(
        std::string_view(reinterpret_cast<const char*>(key.data()), key.size()));
}

ConnectionLimits::Key ConnectionLimits::key_of(const boost::asio::ip::address& address) {
    if (address.is_v4()) {
        return boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, address.to_v4())
            .to_bytes();
    }
    return address.to_v6().to_bytes();
}

ConnectionLimits::Grant ConnectionLimits::acquire(const boost::asio::ip::address& address) {
    // The total first, without the lock: a full server refuses at the cost of two atomics.
    if (total_.fetch_add(1, std::memory_order_relaxed) >= max_total_ && max_total_ != 0) {
        total_.fetch_sub(1, std::memory_order_relaxed);
        return {Verdict::server_full, {}};
    }
    if (max_per_address_ != 0) {
        std::lock_guard lock(mutex_);
        std::uint32_t& count = per_address_[key_of(address)];
        if (count >= max_per_address_) {
            total_.fetch_sub(1, std::memory_order_relaxed);
            return {Verdict::address_full, {}};
        }
        ++count;
    }
    return {Verdict::admitted, Slot(this, address)};
}

void ConnectionLimits::release(const boost::asio::ip::address& address) {
    if (max_per_address_ != 0) {
        std::lock_guard lock(mutex_);
        auto it = per_address_.find(key_of(address));
        if (it != per_address_.end() && --it->second == 0) {
            per_address_.erase(it);
        }
    }
    total_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace shardcast::transport
