# Outdial in a container: `docker compose up` (see docker-compose.yml). Webhooks to private
# addresses stay refused by default in the image; docker-compose.yml allows them for the demo.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY config config
COPY benches benches
RUN cargo build --release --bin outdial

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates espeak-ng lame && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/outdial /usr/local/bin/outdial
ENV OUTDIAL__HTTP__HOST=0.0.0.0
# SIP (carrier.kind = "sip"): signalling on 5080 UDP/TCP, RTP on sip.rtp_port_min..max. Set
# OUTDIAL__SIP__PUBLIC_ADDRESS to the address trunks reach the container at.
ENV OUTDIAL__SIP__LISTEN=0.0.0.0:5080
EXPOSE 8080 5080/udp 5080/tcp
ENTRYPOINT ["outdial"]
CMD ["serve"]
