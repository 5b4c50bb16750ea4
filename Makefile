# The two commands the README leads with, and a few for the edit loop.
.PHONY: run test e2e watch setup clean-site reset-demo

run: ## build and serve the app at http://127.0.0.1:3000 (installs what is missing)
	@bash scripts/run.sh

test: ## every test: cargo test for the workspace, then Playwright (installs what is missing)
	@bash scripts/test.sh

e2e: ## only the build + Playwright; pass Playwright arguments as ARGS="tests/home.spec.ts -g hydrates"
	@bash scripts/test.sh e2e $(ARGS)

watch: ## the edit loop: rebuild and live-reload on every change
	@bash scripts/setup.sh build && . target/toolchain.env && cargo leptos watch

reset-demo: ## forget development's kept state: the session key (everyone signed out) and the demo upstream's accounts
	rm -rf target/tokenless-dev

setup: ## install the toolchain pieces only
	@bash scripts/setup.sh test
