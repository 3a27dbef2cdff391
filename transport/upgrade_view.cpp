#include "transport/upgrade_view.hpp"

#include "transport/ascii.hpp"

namespace shardcast::transport {

namespace http = boost::beast::http;

UpgradeRequestView view_of(const http::request<http::string_body>& request,
                           std::string& protocols) {
    const auto [first, last] = request.equal_range(http::field::sec_websocket_protocol);
    for (auto field = first; field != last; ++field) {
        protocols.append(protocols.empty() ? "" : ", ").append(field->value());
    }
    const auto origin = request.find(http::field::origin);
    UpgradeRequestView view;
    view.method = request.method_string();
    view.version = request.version();
    view.target = request.target();
    view.host = request[http::field::host];
    view.connection_upgrade = has_token(request[http::field::connection], "upgrade");
    view.upgrade_websocket = has_token(request[http::field::upgrade], "websocket");
    view.key = request[http::field::sec_websocket_key];
    view.ws_version = request[http::field::sec_websocket_version];
    view.has_origin = origin != request.end();
    if (view.has_origin) view.origin = origin->value();
    view.authorization = request[http::field::authorization];
    view.protocols = protocols;
    return view;
}

}  // namespace shardcast::transport
