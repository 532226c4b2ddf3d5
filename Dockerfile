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
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/outdial /usr/local/bin/outdial
ENV OUTDIAL__HTTP__HOST=0.0.0.0
EXPOSE 8080
ENTRYPOINT ["outdial"]
CMD ["serve"]
