# The two set-up commands of the README, as make targets.
.PHONY: run test

run:
	./scripts/run.sh

test:
	./scripts/test.sh
