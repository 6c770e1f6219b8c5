# Developer entry points. Everything runs from $(VENV), created and kept current by `make setup`
# (scripts/setup.sh: one stamp per step, so a repeated `make setup` takes seconds).
#
#   make setup   venv + ROS 2 wheels + torch==2.13.0 + requirements + faster_msgs + faster_ros
#   make lint    ruff check .
#   make test    setup, lint, then pytest (PYTEST_WORKERS=0 for a single process)
#   make demo    setup, then `faster-ros demo`
#   make demo-sim  setup, then the shipped ALOHA policy in the MuJoCo sim (3 episodes, video)
#   make msgs    rebuild faster_msgs into the venv if its sources changed
#   make clean   build outputs and caches; `make distclean` also removes the venv

VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= 2
PYTEST_TIMEOUT ?= 300
PYTEST_ARGS ?=

ifeq ($(PYTEST_WORKERS),0)
XDIST :=
else
XDIST := -n $(PYTEST_WORKERS) --dist loadgroup
endif

.PHONY: setup msgs lint test demo demo-sim clean distclean

setup:
	scripts/setup.sh $(VENV)

msgs:
	scripts/build_msgs.sh $(VENV)

lint: setup
	$(BIN)/ruff check .

# pytest exits non-zero (5) when it collects no tests; make fails on it like on any failure.
test: setup lint
	$(BIN)/python -m pytest $(XDIST) --timeout=$(PYTEST_TIMEOUT) $(PYTEST_ARGS)

demo: setup
	$(BIN)/faster-ros demo

demo-sim: setup
	$(BIN)/faster-ros sim-eval --model aloha_sim_vla --episodes 3 --out out/demo_sim
	@echo "video of the first episode: out/demo_sim/episode0.mp4"

clean:
	rm -rf build install log .pytest_cache .ruff_cache .hypothesis

distclean: clean
	rm -rf $(VENV)
