"""The Lambda functions built and run on this machine, without Docker.

- builds: `sam build` of template.yaml (as it deploys, arm64, and for this machine's architecture),
  and what the built template says each function is (its code, layers, handler and environment)
- runtime: running a built function the way Lambda's python3.12 runtime does (its sys.path, the
  Web Adapter's run.sh), and the wheels the runtime provides
- rie: the Lambda Runtime Interface Emulator that ships inside aws-sam-cli, with awslambdaric
- invoke: `make invoke`, one built function with an event from events/, against moto's server
- dynamo_server: the gateway's local DynamoDB (moto) in a process of its own, for invoke and the benchmark

The tests (tests/lambda) and the cold-start benchmark (bench/coldstart.py) use them too.
"""
