"""Local stand-ins for the Alibaba Cloud services the function talks to (tests, demo, benchmarks)."""
