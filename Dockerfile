# The labctl image of docker-compose.yml (untested by CI: no Docker engine).
# Go 1.26.8 or later: github.com/containernetworking/plugins v1.10.0 asks for it.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /labctl ./labctl
# The CNI plugins go.mod pins, found by labctl in cni/ beside itself.
RUN scripts/cni.sh /cni

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 nftables iptables ethtool tcpdump iputils-ping procps \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /labctl /usr/local/bin/labctl
COPY --from=build /cni /usr/local/bin/cni
ENTRYPOINT ["labctl"]
