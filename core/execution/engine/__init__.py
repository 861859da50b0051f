"""The TFF computations of one run and the loop over its rounds.

  computations   the round as four builders: `build_client_work`,
                 `build_gather` (shared with `tff_factory`),
                 `build_server_stage`, composed by `compose_round`;
                 `RoundComputations` builds them for a checked scenario
  run            `Run`: data prepared, computations traced, rounds executed
  flat_model     `FlatModel`: the model as one flat vector (weights, then
                 running statistics)
  client_store   `ClientStore`: every client's samples, read by client id
  sampling       attack groups and the clients sampled each round
  detection      confusion counts, precision and recall
"""
