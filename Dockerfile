# Multi-stage build of a static ferrogate binary (musl), run from scratch.
# Not exercised in CI: the project's machines have no Docker engine.
FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ferrogate

FROM scratch
COPY --from=build /src/target/release/ferrogate /ferrogate
COPY config/quickstart.yaml /config/quickstart.yaml
EXPOSE 8080
ENTRYPOINT ["/ferrogate", "serve", "--listen", "0.0.0.0:8080"]
