#include "transport/client_address.hpp"

#include <algorithm>
#include <charconv>
#include <string>

namespace shardcast::transport {
namespace net = boost::asio;

namespace {

std::string_view trim(std::string_view text) {
    const std::size_t first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
        return {};
    }
    return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

std::optional<net::ip::address> parse_address(std::string_view text) {
    boost::system::error_code ec;
    const auto address = net::ip::make_address(std::string(trim(text)), ec);
    if (ec) {
        return std::nullopt;
    }
    return address;
}

// An IPv4-mapped IPv6 address (::ffff:a.b.c.d, which a dual-stack socket reports) as IPv4.
net::ip::address unmapped(const net::ip::address& address) {
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        return net::ip::make_address_v4(net::ip::v4_mapped, address.to_v6());
    }
    return address;
}

template <std::size_t N>
bool same_prefix(const std::array<unsigned char, N>& a,
                 const std::array<unsigned char, N>& b,
                 unsigned prefix) {
    for (unsigned bit = 0; bit < prefix; ++bit) {
        const unsigned char mask = static_cast<unsigned char>(0x80u >> (bit % 8));
        if ((a[bit / 8] & mask) != (b[bit / 8] & mask)) {
            return false;
        }
    }
    return true;
}

template <std::size_t N>
bool zero_after(const std::array<unsigned char, N>& bytes, unsigned prefix) {
    for (unsigned bit = prefix; bit < N * 8; ++bit) {
        if ((bytes[bit / 8] & (0x80u >> (bit % 8))) != 0) {
            return false;
        }
    }
    return true;
}

bool no_host_bits(const net::ip::address& address, unsigned prefix) {
    return address.is_v4() ? zero_after(address.to_v4().to_bytes(), prefix)
                           : zero_after(address.to_v6().to_bytes(), prefix);
}

}  // namespace

bool Cidr::contains(const net::ip::address& address) const {
    const net::ip::address candidate = unmapped(address);
    if (candidate.is_v4() != network.is_v4()) {
        return false;
    }
    if (candidate.is_v4()) {
        return same_prefix(candidate.to_v4().to_bytes(), network.to_v4().to_bytes(), prefix);
    }
    return same_prefix(candidate.to_v6().to_bytes(), network.to_v6().to_bytes(), prefix);
}

std::optional<Cidr> parse_cidr(std::string_view text) {
    const std::size_t slash = text.find('/');
    const auto network = parse_address(text.substr(0, slash));
    if (!network) {
        return std::nullopt;
    }
    const net::ip::address address = unmapped(*network);
    const unsigned bits = address.is_v4() ? 32 : 128;
    unsigned prefix = bits;
    if (slash != std::string_view::npos) {
        const std::string_view digits = text.substr(slash + 1);
        const auto [end, ec] =
            std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
        if (ec != std::errc{} || end != digits.data() + digits.size() || prefix > bits) {
            return std::nullopt;
        }
    }
    // 10.0.0.1/8 is a mistake for 10.0.0.0/8 or 10.0.0.1/32: refuse rather than guess.
    if (!no_host_bits(address, prefix)) {
        return std::nullopt;
    }
    return Cidr{address, prefix};
}

net::ip::address client_address(const net::ip::address& peer,
                                std::string_view forwarded_for,
                                std::string_view real_ip,
                                const std::vector<Cidr>& trusted) {
    const auto is_trusted = [&](const net::ip::address& address) {
        return std::any_of(trusted.begin(), trusted.end(),
                           [&](const Cidr& cidr) { return cidr.contains(address); });
    };
    net::ip::address client = unmapped(peer);
    if (!is_trusted(client)) {
        return client;
    }
    if (!forwarded_for.empty()) {
        // Right to left: each proxy appends the address it was reached from.
        while (!forwarded_for.empty()) {
            const std::size_t comma = forwarded_for.rfind(',');
            const std::string_view entry =
                comma == std::string_view::npos ? forwarded_for : forwarded_for.substr(comma + 1);
            forwarded_for = comma == std::string_view::npos ? std::string_view{}
                                                            : forwarded_for.substr(0, comma);
            const auto address = parse_address(entry);
            if (!address) {
                return client;
            }
            client = unmapped(*address);
            if (!is_trusted(client)) {
                return client;
            }
        }
        return client;
    }
    if (const auto address = parse_address(real_ip)) {
        return unmapped(*address);
    }
    return client;
}

}  // namespace shardcast::transport
