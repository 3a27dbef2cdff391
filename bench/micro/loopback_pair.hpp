// LoopbackPair: a connected TCP socket pair on 127.0.0.1, for measuring what one send()
// costs the calling thread. The server end is the accepted socket with TCP_NODELAY, as the
// listener sets up every client (transport/listener.cpp); a reader thread drains the client
// end. With ack_every = n it also answers one byte per n bytes read, so a sender that waits
// for the answer sends each message into an idle connection: the send then transmits at
// once, where a sender that runs ahead only appends to a queue the receiver's ACKs drain.
//
// Thread contract: constructed, used and destroyed on one thread; the reader thread is its
// own and ends when the destructor shuts the server end.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <string_view>
#include <system_error>
#include <thread>

namespace shardcast::bench {

class LoopbackPair {
public:
    // On failure error() says which step failed and send() must not be called.
    explicit LoopbackPair(std::size_t ack_every) { connect(ack_every); }
    LoopbackPair(const LoopbackPair&) = delete;
    LoopbackPair& operator=(const LoopbackPair&) = delete;
    ~LoopbackPair() {
        // The reader sees end of stream once everything sent has been read, and returns.
        if (server_ >= 0) ::shutdown(server_, SHUT_WR);
        if (reader_.joinable()) reader_.join();
        for (const int fd : {listener_, server_, client_}) {
            if (fd >= 0) ::close(fd);
        }
    }

    const std::error_code& error() const { return error_; }
    const char* failed_step() const { return failed_step_; }

    // One send() on the server end. Blocks while the socket buffer is full.
    bool send(std::string_view bytes) {
        return ::send(server_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
               static_cast<ssize_t>(bytes.size());
    }

    // Blocks until the reader answers that it has read the next ack_every bytes.
    bool wait_ack() {
        char ack = 0;
        return ::recv(server_, &ack, 1, 0) == 1;
    }

private:
    void connect(std::size_t ack_every) {
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof(address);
        auto* any = reinterpret_cast<sockaddr*>(&address);
        const int one = 1;
        if (!check((listener_ = ::socket(AF_INET, SOCK_STREAM, 0)) >= 0, "socket") ||
            !check(::bind(listener_, any, sizeof(address)) == 0, "bind") ||
            !check(::listen(listener_, 1) == 0, "listen") ||
            !check(::getsockname(listener_, any, &length) == 0, "getsockname") ||
            !check((client_ = ::socket(AF_INET, SOCK_STREAM, 0)) >= 0, "socket") ||
            !check(::connect(client_, any, sizeof(address)) == 0, "connect") ||
            !check((server_ = ::accept(listener_, nullptr, nullptr)) >= 0, "accept") ||
            !check(::setsockopt(server_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0,
                   "setsockopt")) {
            return;
        }
        reader_ = std::thread([fd = client_, ack_every] {
            std::array<char, 64 * 1024> buffer;
            std::size_t unacked = 0;
            ssize_t n = 0;
            while ((n = ::recv(fd, buffer.data(), buffer.size(), 0)) > 0) {
                unacked += static_cast<std::size_t>(n);
                for (; ack_every > 0 && unacked >= ack_every; unacked -= ack_every) {
                    ::send(fd, "a", 1, MSG_NOSIGNAL);
                }
            }
        });
    }

    bool check(bool ok, const char* step) {
        if (!ok) {
            error_ = std::error_code(errno, std::system_category());
            failed_step_ = step;
        }
        return ok;
    }

    int listener_ = -1;
    int server_ = -1;  // the end we send on
    int client_ = -1;  // the end the reader drains
    std::thread reader_;
    std::error_code error_;
    const char* failed_step_ = "";
};

}  // namespace shardcast::bench
