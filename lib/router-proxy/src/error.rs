//! Why the gateway answered a request itself. Each kind has a status and a
//! stable label sent in `x-datum-router-error` and written to the access log
//! and metrics, so an operator can tell a missing route from a dead backend
//! without reading code.

use http::StatusCode;

/// The response header naming the gateway's own error.
pub const ERROR_HEADER: &str = "x-datum-router-error";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// No route matched: 404.
    NoRoute,
    /// The chosen destination's VPCService does not exist: 500.
    DestinationUnresolved,
    /// Every destination has weight 0: 500.
    NoWeightedDestination,
    /// The service has no ready endpoint: 503.
    NoHealthyUpstream,
    /// Connecting to the endpoint failed: 502.
    UpstreamConnect,
    /// The endpoint broke the protocol or reset the stream: 502.
    UpstreamProtocol,
    /// The request deadline passed: 504.
    UpstreamTimeout,
    /// TLS to the endpoint failed (handshake, certificate, or no usable TLS configuration): 502.
    UpstreamTls,
    /// The request's host belongs to another listener than the TLS connection's SNI chose: 421.
    Misdirected,
    /// The destination is at its circuitBreaker.maxRequests: 503.
    UpstreamOverflow,
    /// A VPCEgress policy (or the absence of one, for CONNECT) refuses the destination: 403.
    EgressDenied,
    /// The request itself is malformed (no host, bad URI): 400.
    BadRequest,
    /// Content-Length and Transfer-Encoding in one HTTP/1.1 request head (request smuggling's shape): 400.
    AmbiguousFraming,
    /// A Transfer-Encoding other than exactly `chunked`: 501.
    UnsupportedTransferEncoding,
    /// More than one Host line: 400.
    DuplicateHost,
    /// An absolute-form target with a scheme other than http or https: 400.
    UnsupportedScheme,
    /// Userinfo in the target's authority: 400.
    InvalidAuthority,
    /// A path or query character outside RFC 3986: 400.
    InvalidTarget,
    /// The client's body broke its framing (a bad chunk size) or stopped mid-way while it was forwarded: 400.
    ClientBody,
    /// The client's body did not keep up with the body read timeout: 408.
    ClientBodyTimeout,
}

impl ProxyError {
    pub fn status(self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::DestinationUnresolved | Self::NoWeightedDestination => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NoHealthyUpstream | Self::UpstreamOverflow => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamConnect | Self::UpstreamProtocol | Self::UpstreamTls => StatusCode::BAD_GATEWAY,
            Self::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::EgressDenied => StatusCode::FORBIDDEN,
            Self::BadRequest
            | Self::AmbiguousFraming
            | Self::DuplicateHost
            | Self::UnsupportedScheme
            | Self::InvalidAuthority
            | Self::InvalidTarget
            | Self::ClientBody => StatusCode::BAD_REQUEST,
            Self::UnsupportedTransferEncoding => StatusCode::NOT_IMPLEMENTED,
            Self::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::NoRoute => "no-route",
            Self::DestinationUnresolved => "destination-unresolved",
            Self::NoWeightedDestination => "no-weighted-destination",
            Self::NoHealthyUpstream => "no-healthy-upstream",
            Self::UpstreamConnect => "upstream-connect-error",
            Self::UpstreamProtocol => "upstream-protocol-error",
            Self::UpstreamTimeout => "upstream-timeout",
            Self::UpstreamTls => "upstream-tls-error",
            Self::Misdirected => "misdirected-request",
            Self::UpstreamOverflow => "upstream-overflow",
            Self::EgressDenied => "egress-denied",
            Self::BadRequest => "bad-request",
            Self::AmbiguousFraming => "ambiguous-framing",
            Self::UnsupportedTransferEncoding => "unsupported-transfer-encoding",
            Self::DuplicateHost => "duplicate-host",
            Self::UnsupportedScheme => "unsupported-scheme",
            Self::InvalidAuthority => "invalid-authority",
            Self::InvalidTarget => "invalid-request-target",
            Self::ClientBody => "client-body-error",
            Self::ClientBodyTimeout => "request-body-timeout",
        }
    }
}
