# The operator image the Helm chart runs: `docker build -t <registry>/kfp-operator:<version> .`
# One static-enough binary on a distroless base with the CA bundle (registries and ML platforms
# are reached over TLS); it runs as the unprivileged user the chart's securityContext expects.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p kfp-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/kfp-operator /usr/local/bin/kfp-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kfp-operator"]
CMD ["run"]
