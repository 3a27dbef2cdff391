// ClusterLink: what a Dispatcher tells the other nodes of a cluster. The dispatcher knows
// only this interface; transport::NatsBus implements it over NATS. Without a link the
// dispatcher is a single node.
//
// Thread contract: every call but stop_receiving() must return at once and never block; an
// implementation queues the work for its own thread. held(), released(), claim(), forward(),
// forward_broadcast(), forward_disconnect(), fetch_history() and upstream() are called on
// shard threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "dispatcher/payload.hpp"

namespace shardcast::dispatcher {

class ClusterLink {
public:
    virtual ~ClusterLink() = default;

    // The client id's first local session attached: route the id's messages here.
    virtual void held(std::string_view client_id) = 0;
    // The id's last local session left: stop routing its messages here.
    virtual void released(std::string_view client_id) = 0;
    // A session attached at since_ns (Unix time, ns) in replace mode: sessions of the id
    // attached elsewhere before it must close with 4001.
    virtual void claim(std::string_view client_id, std::int64_t since_ns) = 0;

    // A send or disconnect for an id that other nodes may hold. False when the message could
    // not be handed to the bus (it is down or backed up): the caller counts it as failed.
    virtual bool forward(std::string_view client_id, const Payload& payload) = 0;
    virtual bool forward_disconnect(std::string_view client_id,
                                    std::uint16_t code,
                                    std::string_view reason) = 0;
    virtual bool forward_broadcast(const Payload& payload, std::string_view except) = 0;

    // Called once by Dispatcher::stop, on its thread, after every shard has closed its
    // sessions and before the shard threads end. Returns once nothing from the other nodes is
    // being, or will be, handed to the dispatcher: the one call that waits.
    virtual void stop_receiving() = 0;

    // Whether the cluster's stream numbers messages (history on JetStream); read once, at
    // set_link. Then a shard hands every send and broadcast accepted here to forward() and
    // forward_broadcast(), whatever the node holds, and delivers it when the link brings it
    // back, numbered, as an echo (Dispatcher::send_stored); and a resume asks fetch_history.
    virtual bool sequences() const = 0;
    // A session (Session::serial) of client_id, on shard `shard`, resumes from since in
    // epoch. Answered once, always, with Dispatcher::resumed(), from another thread.
    virtual void fetch_history(std::string_view client_id,
                               std::uint64_t since,
                               std::string_view epoch,
                               std::size_t shard,
                               std::uint64_t session) = 0;

    // Whether upstream() wants the frames clients send; read once per frame. info is what the
    // client's connect token says about it (a JSON object), or empty.
    virtual bool wants_upstream() const = 0;
    virtual void upstream(std::string_view client_id,
                          std::string_view info,
                          std::string_view data) = 0;
};

}  // namespace shardcast::dispatcher
