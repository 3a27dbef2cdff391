// The client address a request counts and is logged under: the socket's peer, or, when that
// peer is a trusted proxy, the address the proxy names in X-Forwarded-For or X-Real-IP.
// Pure functions, any thread.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <optional>
#include <string_view>
#include <vector>

namespace shardcast::transport {

// An address range, such as 10.0.0.0/8 or ::1/128. IPv4 ranges also match IPv4-mapped IPv6
// addresses.
struct Cidr {
    boost::asio::ip::address network;
    unsigned prefix = 0;

    bool contains(const boost::asio::ip::address& address) const;
};

// "10.0.0.0/8", "192.168.1.7" (a single address) or "fd00::/8"; nullopt when malformed or
// when host bits are set past the prefix.
std::optional<Cidr> parse_cidr(std::string_view text);

// The client behind `peer`. Only when peer is a trusted proxy are the headers read: the
// right-most X-Forwarded-For entry that is not itself a trusted proxy, else X-Real-IP, else
// the peer. A malformed header entry ends the walk at the last address known good, so a
// client cannot hide behind garbage.
boost::asio::ip::address client_address(const boost::asio::ip::address& peer,
                                        std::string_view forwarded_for,
                                        std::string_view real_ip,
                                        const std::vector<Cidr>& trusted);

}  // namespace shardcast::transport
