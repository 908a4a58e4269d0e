# Builds a self-contained sluice binary and a small runtime image for it.
#   docker build -t sluice .
#   docker run --rm -v $PWD/sluice.yml:/etc/sluice/sluice.yml:ro -v sluice-data:/var/lib/sluice sluice
ARG SWIFT_IMAGE=swift:6.1-bookworm

FROM ${SWIFT_IMAGE} AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libpq-dev libsqlite3-dev libcurl4-openssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources Sources
COPY connectors connectors
COPY Tests Tests
RUN swift build -c release --product sluice --static-swift-stdlib \
    && install -D .build/release/sluice /out/sluice

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libpq5 libsqlite3-0 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/sluice sluice && mkdir -p /var/lib/sluice /etc/sluice \
    && chown sluice /var/lib/sluice
COPY --from=build /out/sluice /usr/local/bin/sluice
USER sluice
VOLUME /var/lib/sluice
EXPOSE 9187
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s CMD curl -fsS http://127.0.0.1:9187/health || exit 1
ENTRYPOINT ["sluice"]
CMD ["run", "--config", "/etc/sluice/sluice.yml"]
