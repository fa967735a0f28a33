/*
 * Drives libganesha_ctdb_recov.so the way NFS-Ganesha 4.3 does: dlopen()ed as
 * libganesha_rados_recov.so with RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND from a process
 * whose global scope holds libganesha_nfsd.so.<version> (here the fake, linked in), the
 * four symbols looked up, and the hooks called in Ganesha's order with client objects laid
 * out at Ganesha 4.3's offsets.
 *
 * usage: harness-<version> <libganesha_ctdb_recov.so> <empty work directory> [--no-dlclose]
 * Prints PASS/FAIL lines; exits 1 if any check failed, 2 if it could not run at all.
 *
 * Like ganesha.nfsd, the harness dlclose()s the library after recovery_shutdown. Under
 * valgrind pass --no-dlclose: unmapping the library makes the blocks its process-lifetime
 * statics hold "definitely lost", while mapped they are (correctly) "still reachable".
 * harness-4.3 and harness-6.5 (6.x's client layout, same table) run scenarios a-h,
 * harness-4.1 (a Ganesha the library does not know) i.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness_common.h"

#ifndef GANESHA_VERSION
#error "build with -DGANESHA_VERSION='\"4.3\"' (the fake libganesha_nfsd version linked)"
#endif


/* ---- Ganesha's side of the hooks --------------------------------------------------- */

static void read_clids(struct harness *h, nfs_grace_start_t *gsp)
{
	offered_reset();
	h->be->recovery_read_clids(gsp, cb_add_clid_entry, cb_add_rfh_entry);
}

/* nfs_client_id_expire: rm_clid only when the client has a tag, then free the tag. */
static void expire_client(struct harness *h, nfs_client_id_t *cid)
{
	char **tag = (char **)((char *)cid + CID_RECOV_TAG_OFF);

	if (*tag != NULL) {
		h->be->rm_clid(cid);
		free(*tag);
		*tag = NULL;
	}
	client_free(cid);
}

static int ganesha_start(struct harness *h)
{
	int rc = ganesha_configure(h);

	if (rc != 0)
		return rc;
	rc = h->be->recovery_init();
	if (rc != 0)
		return rc;
	h->be->set_enforcing();
	read_clids(h, NULL);
	return 0;
}

static void ganesha_stop(struct harness *h)
{
	h->be->maybe_start_grace();
	h->be->recovery_shutdown();
}

/* ---- the test clients -------------------------------------------------------------- */

static const unsigned char c1_owner[] = "Libnfs pid:20953 time:1700000000";
static const unsigned char c2_owner[] = { 0x00, 'L', '/', 0xff, 0x10, 0x7f, ' ', 'a' };

/* v4.0 client: no server address, printable owner. */
static nfs_client_id_t *new_c1(uint64_t clientid)
{
	struct client_spec s = {
		.clientid = clientid, .minorversion = 0, .server_addr = 0,
		.caller = "::ffff:10.77.0.21", .owner = c1_owner,
		.owner_len = (int)sizeof(c1_owner) - 1, .owner_alloc = sizeof(c1_owner) - 1,
	};
	return client_new(&s);
}

/* v4.1 client that came in through 10.77.1.3, binary owner. */
static nfs_client_id_t *new_c2(uint64_t clientid)
{
	struct client_spec s = {
		.clientid = clientid, .minorversion = 1, .server_addr = TAKEOVER_IP_HOST,
		.caller = "::ffff:10.77.0.22", .owner = c2_owner,
		.owner_len = (int)sizeof(c2_owner), .owner_alloc = sizeof(c2_owner),
	};
	return client_new(&s);
}

struct world {
	struct harness *h;
	char *tag1;          /* expected tags, computed here */
	char *tag2;
	nfs_client_id_t *c1; /* the live incarnations */
	nfs_client_id_t *c2;
	uint64_t next_id;
};

/* The server process goes away: its client objects with it (no rm_clid). */
static void drop_clients(struct world *w)
{
	client_free(w->c1);
	client_free(w->c2);
	w->c1 = w->c2 = NULL;
}

/* A client reclaims: Ganesha makes a new client id and calls add_clid. */
static bool reclaim(struct world *w, nfs_client_id_t **slot,
		    nfs_client_id_t *(*make)(uint64_t), const char *tag)
{
	client_free(*slot);
	*slot = make(w->next_id++);
	w->h->be->add_clid(*slot);
	/* nfs4_chk_clid: strncmp(cid_recov_tag, cl_name, PATH_MAX) against the replay. */
	return str_eq(client_tag(*slot), tag) && times_offered(tag) == 1;
}

static void restart(struct world *w, bool clean, const char *why)
{
	int rc;

	if (clean)
		ganesha_stop(w->h);
	drop_clients(w);
	rc = ganesha_start(w->h);
	check(rc == 0, "%s: restart (rc %d; -1000: config refused, -1001: no vtable)", why, rc);
}

/* ---- scenario (a): configuration --------------------------------------------------- */

static int load_block(struct harness *h, const struct fake_kv *items, size_t n,
		      struct config_error_type *err)
{
	struct config_root tree = {
		.filename = "ganesha.conf", .block_name = "CTDB_RECOVERY",
		.items = items, .n_items = n,
	};
	return load_config(h, &tree, err);
}

static void config_absent(struct harness *h)
{
	struct config_root tree = { .filename = "ganesha.conf", .block_name = NULL };
	struct config_error_type err;
	struct stat st;
	size_t mark = fake_log_mark();
	int rc = load_config(h, &tree, &err);
	struct nfs4_recovery_backend *be = NULL;

	check(rc == 0, "no CTDB_RECOVERY block: defaults accepted (rc %d)", rc);
	if (stat(DEFAULT_DIR, &st) == 0) {
		printf("SKIP (a) %s exists: not starting on the default store\n", DEFAULT_DIR);
		return;
	}
	h->kv_init(&be);
	if (!check(be != NULL, "rados_kv_backend_init hands out the vtable"))
		return;
	rc = be->recovery_init();
	check(rc != 0, "defaults: recovery_init fails without %s (rc %d)", DEFAULT_DIR, rc);
	check(logged_error(mark, DEFAULT_DIR) &&
		      fake_log_grep(mark, DEFAULT_DIR, "No such file or directory", NULL),
	      "defaults: the error names %s and says it does not exist", DEFAULT_DIR);
}

static void config_rejects(struct harness *h, const char *what, const struct fake_kv *items,
			   size_t n, const char *needle1, const char *needle2)
{
	struct config_error_type err;
	size_t mark = fake_log_mark();
	int rc = load_block(h, items, n, &err);

	check(rc == -1, "%s: rados_load_config_from_parse returns -1 (got %d)", what, rc);
	check(fake_log_grep(mark, " :NIV_CRIT :", needle1, needle2, NULL) != NULL,
	      "%s: an error line names %s and %s", what, needle1, needle2);
}

static void scenario_config(struct harness *h)
{
	const struct fake_kv unknown[] = {
		{ "Store", "dir" }, { "Dir", h->store }, { "Node_Id", NODE_ID },
		{ "Nodeid", "1" },
	};
	const struct fake_kv rados[] = { { "Store", "rados" }, { "Dir", h->store } };
	const struct fake_kv relative[] = { { "Dir", "relative/dir" }, { "Node_Id", "h1" } };
	const struct fake_kv twice[] = { { "Store", "ctdb" }, { "Store", "dir" }, { "Dir", h->store } };
	struct config_error_type err;
	const struct fake_kv *valid;
	size_t n;
	int rc;

	scenario = "a";
	config_absent(h);
	config_rejects(h, "unknown key Nodeid", unknown, 4, "Store, Dir, Node_Id", "refusing");
	check(strstr(last_diag, "Unknown parameter (Nodeid)") != NULL,
	      "the parser's own message for Nodeid reached err_type->fp");
	config_rejects(h, "Store = rados", rados, 2, "Store", "\"rados\"");
	config_rejects(h, "relative Dir", relative, 2, "Dir", "relative/dir");
	config_rejects(h, "Store given twice", twice, 3, "a key given twice", "refusing");
	check(strstr(last_diag, "Parameter Store set more than once") != NULL,
	      "the parser names the repeated key and its line");
	{
		struct config_root tree = {
			.filename = "ganesha.conf", .block_name = "CTDB_RECOVERY",
			.items = twice + 1, .n_items = 2, .n_blocks = 2,
		};
		size_t mark = fake_log_mark();

		rc = load_config(h, &tree, &err);
		check(rc == -1, "two CTDB_RECOVERY blocks: refused (rc %d)", rc);
		check(fake_log_grep(mark, " :NIV_CRIT :", "2 CTDB_RECOVERY blocks", "merge", NULL) !=
			      NULL,
		      "two blocks: an error line says so");
		check(strstr(last_diag, "Only one CTDB_RECOVERY block allowed") != NULL,
		      "the parser names the second block's line");
	}
	valid = valid_items(h, &n);
	rc = load_block(h, valid, n, &err);
	check(rc == 0 && err.errors == 0, "valid block (Store = dir; Dir = %s; Node_Id = %s): rc %d",
	      h->store, NODE_ID, rc);
}

/* ---- scenario (b): first start, two clients --------------------------------------- */

static void add_first_clients(struct world *w)
{
	struct harness *h = w->h;
	size_t mark = fake_log_mark();

	w->c1 = new_c1(w->next_id++);
	h->be->add_clid(w->c1);
	check(str_eq(client_tag(w->c1), w->tag1), "v4.0 client tag \"%s\" (expected \"%s\")",
	      client_tag(w->c1) ? client_tag(w->c1) : "(null)", w->tag1);
	check(fake_log_count_level(mark, NIV_DEBUG) == 0,
	      "CLIENTID at EVENT: the library logs no DEBUG lines");

	fake_set_component_level(COMPONENT_CLIENTID, NIV_DEBUG);
	mark = fake_log_mark();
	w->c2 = new_c2(w->next_id++);
	h->be->add_clid(w->c2);
	check(str_eq(client_tag(w->c2), w->tag2), "v4.1 client tag \"%s\" (expected \"%s\")",
	      client_tag(w->c2) ? client_tag(w->c2) : "(null)", w->tag2);
	check(fake_log_count_level(mark, NIV_DEBUG) > 0,
	      "CLIENTID raised to DEBUG: the library's DEBUG lines appear");

	check(store_files_with(h, w->tag1, NULL) == 1, "a store file holds the v4.0 tag");
	check(store_files_with(h, w->tag2, TAKEOVER_IP) == 1,
	      "a store file holds the v4.1 tag and its server address " TAKEOVER_IP);
}

static void scenario_start(struct world *w)
{
	struct harness *h = w->h;
	struct nfs4_recovery_backend *kv = NULL, *ng = NULL;
	char *nodeid = NULL;
	int rc;

	scenario = "b";
	h->kv_init(&kv);
	h->ng_init(&ng);
	h->cluster_init(&h->be);
	check(h->be != NULL && kv == h->be && ng == h->be,
	      "rados_kv/ng/cluster_backend_init hand out the same vtable");
	rc = h->be->recovery_init();
	check(rc == 0, "recovery_init on an empty store: %d", rc);
	h->be->set_enforcing();
	read_clids(h, NULL);
	check(n_offered == 0, "read_clids(NULL) on an empty store offers nothing");
	check(h->be->grace_enforcing() && h->be->is_member(), "grace_enforcing, is_member");
	check(h->be->try_lift_grace(), "try_lift_grace");
	h->be->end_grace();
	rc = h->be->get_nodeid(&nodeid);
	check(rc == 0 && str_eq(nodeid, NODE_ID), "get_nodeid gives malloc'd \"%s\" (rc %d)",
	      nodeid ? nodeid : "(null)", rc);
	free(nodeid);
	add_first_clients(w);
}

/* ---- scenario (c): restart, reclaim, end_grace ------------------------------------- */

static void scenario_restart(struct world *w)
{
	const char *both[] = { w->tag1, w->tag2, NULL };
	const char *only1[] = { w->tag1, NULL };

	scenario = "c";
	restart(w, true, "shutdown");
	check(offered_exactly(both), "read_clids(NULL) offers both tags, once each");
	check(reclaim(w, &w->c1, new_c1, w->tag1),
	      "the v4.0 client reclaims under a new client id with the same tag");
	w->h->be->end_grace();
	restart(w, true, "shutdown after end_grace");
	if (!check(offered_exactly(only1), "only the reclaimed client is offered again"))
		print_offered();
	check(reclaim(w, &w->c1, new_c1, w->tag1), "it reclaims again");
	w->h->be->end_grace();
}

/* ---- scenario (d): a crash during grace -------------------------------------------- */

static void scenario_crash(struct world *w)
{
	const char *both[] = { w->tag1, w->tag2, NULL };

	scenario = "d";
	w->c2 = new_c2(w->next_id++);
	w->h->be->add_clid(w->c2);
	check(str_eq(client_tag(w->c2), w->tag2), "the v4.1 client comes back as a new client");
	restart(w, false, "crash (no shutdown)");
	check(offered_exactly(both), "both clients offered after the crash");
	check(reclaim(w, &w->c1, new_c1, w->tag1), "the v4.0 client reclaims");
	restart(w, false, "crash during grace (no end_grace)");
	if (!check(offered_exactly(both), "a crash during grace keeps both clients' rights"))
		print_offered();
	check(reclaim(w, &w->c1, new_c1, w->tag1) && reclaim(w, &w->c2, new_c2, w->tag2),
	      "both reclaim");
	w->h->be->end_grace();
}

/* ---- scenario (e): expiry ---------------------------------------------------------- */

static void scenario_expire(struct world *w)
{
	static const unsigned char owner[] = "expiring client";
	struct client_spec s = {
		.clientid = w->next_id++, .caller = "::ffff:10.77.0.24", .owner = owner,
		.owner_len = (int)sizeof(owner) - 1, .owner_alloc = sizeof(owner) - 1,
	};
	nfs_client_id_t *c4 = client_new(&s);
	char *tag4 = expected_tag(s.caller, owner, sizeof(owner) - 1);

	scenario = "e";
	w->h->be->add_clid(c4);
	check(str_eq(client_tag(c4), tag4) && store_files_with(w->h, tag4, NULL) == 1,
	      "add_clid stores the record");
	w->h->be->rm_clid(c4);
	check(client_tag(c4) == NULL, "rm_clid frees cid_recov_tag and sets it to NULL");
	check(store_files_with(w->h, tag4, NULL) == 0, "rm_clid removes the record");
	client_free(c4);
	free(tag4);
}

/* ---- scenario (f): revoked delegation handles -------------------------------------- */

static void scenario_revoke(struct world *w)
{
	static const unsigned char handle[] = { 0xfb, 0xff, 0x00, 0x10, 0x20, 0x3e, 0x3f };
	nfs_fh4 fh = { .nfs_fh4_len = sizeof(handle), .nfs_fh4_val = (char *)handle };
	const char *both[] = { w->tag1, w->tag2, NULL };
	char *b64 = expected_base64url(handle, sizeof(handle));
	const clid_entry_t *e1, *e2;

	scenario = "f";
	check(str_eq(b64, "-_8AECA-Pw=="), "expected base64url is %s", b64);
	w->h->be->add_revoke_fh(w->c1, &fh);
	restart(w, true, "shutdown");
	check(offered_exactly(both), "both clients offered (the expired one is not)");
	e1 = offered_entry(w->tag1);
	e2 = offered_entry(w->tag2);
	check(e1 != NULL && rfh_count(e1) == 1 &&
		      str_eq(((rdel_fh_t *)e1->cl_rfh_list.next)->rdfh_handle_str, b64),
	      "add_rfh_entry receives %s for the v4.0 client", b64);
	check(e2 != NULL && rfh_count(e2) == 0, "and nothing for the other client");
	check(reclaim(w, &w->c1, new_c1, w->tag1) && reclaim(w, &w->c2, new_c2, w->tag2),
	      "both reclaim");
	w->h->be->end_grace();
	free(b64);
}

/* ---- scenario (g): IP takeover ----------------------------------------------------- */

static void scenario_takeover(struct world *w)
{
	char ip[] = TAKEOVER_IP;
	nfs_grace_start_t gs = { .event = EVENT_TAKE_IP, .nodeid = -1, .ipaddr = ip };
	const char *only2[] = { w->tag2, NULL };
	const char *both[] = { w->tag1, w->tag2, NULL };

	scenario = "g";
	w->h->be->set_enforcing();
	read_clids(w->h, &gs);
	if (!check(offered_exactly(only2), "takeover of " TAKEOVER_IP " offers only its client"))
		print_offered();
	check(reclaim(w, &w->c2, new_c2, w->tag2), "that client reclaims");
	w->h->be->end_grace();
	restart(w, true, "shutdown");
	check(offered_exactly(both), "the takeover's end_grace kept the other IP's client");
	check(reclaim(w, &w->c1, new_c1, w->tag1) && reclaim(w, &w->c2, new_c2, w->tag2),
	      "both reclaim");
	w->h->be->end_grace();
}

/* ---- scenario (h): hostile input, each case in a child process --------------------- */

/* Runs body in a forked child so that a crash is reported as this case's failure. */
static void isolated(struct harness *h, const char *name, void (*body)(struct harness *))
{
	pid_t pid;
	int status;

	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		check(false, "%s: fork: %s", name, strerror(errno));
		return;
	}
	if (pid == 0) {
		failures = 0;
		body(h);
		fflush(stdout);
		_exit(failures == 0 ? 0 : 1);
	}
	if (waitpid(pid, &status, 0) < 0) {
		check(false, "%s: waitpid: %s", name, strerror(errno));
		return;
	}
	if (WIFSIGNALED(status))
		check(false, "%s: CRASHED with signal %d", name, WTERMSIG(status));
	else if (WEXITSTATUS(status) != 0)
		check(false, "%s: failed in the child (exit %d; 99 = valgrind errors)", name,
		      WEXITSTATUS(status));
}

static void add_hostile(struct harness *h, const struct client_spec *s, const char *needle,
			const char *what)
{
	nfs_client_id_t *cid = client_new(s);
	size_t mark = fake_log_mark();

	h->be->add_clid(cid);
	check(client_tag(cid) == NULL, "%s: no tag set", what);
	check(logged_error(mark, needle), "%s: an error line mentions \"%s\"", what, needle);
	client_free(cid);
}

static void hostile_owner_lengths(struct harness *h)
{
	static const unsigned char owner[16] = "hostile";
	struct client_spec s = {
		.clientid = 0x6001, .caller = "::ffff:10.77.0.66", .owner = owner,
		.owner_len = -1, .owner_alloc = 0,
	};

	add_hostile(h, &s, "-1 bytes", "owner length -1 (record has no owner bytes)");
	s.owner_len = 5000;
	s.owner_alloc = sizeof(owner);
	add_hostile(h, &s, "5000 bytes", "owner length 5000 (16 bytes allocated)");
}

static void hostile_no_gsh_client(struct harness *h)
{
	static const unsigned char owner[] = "no-gsh-client";
	struct client_spec s = {
		.clientid = 0x6002, .caller = NULL, .owner = owner,
		.owner_len = (int)sizeof(owner) - 1, .owner_alloc = sizeof(owner) - 1,
	};
	nfs_client_id_t *cid = client_new(&s);
	char *want = expected_tag(NULL, owner, sizeof(owner) - 1);

	h->be->add_clid(cid);
	check(str_eq(client_tag(cid), want) && strncmp(want, "(unknown)-", 10) == 0,
	      "gsh_client NULL: tag \"%s\"", client_tag(cid) ? client_tag(cid) : "(null)");
	expire_client(h, cid);
	free(want);
}

static void hostile_unterminated_addr(struct harness *h)
{
	static const unsigned char owner[] = "unterminated";
	struct client_spec s = {
		.clientid = 0x6003, .caller = "", .caller_unterminated = true, .owner = owner,
		.owner_len = (int)sizeof(owner) - 1, .owner_alloc = sizeof(owner) - 1,
	};

	add_hostile(h, &s, "NUL", "hostaddr_str without NUL");
}

static void hostile_null_client(struct harness *h)
{
	static char handle[] = "fh";
	nfs_fh4 fh = { .nfs_fh4_len = 2, .nfs_fh4_val = handle };
	size_t mark = fake_log_mark();

	h->be->add_clid(NULL);
	check(logged_error(mark, "add_clid"), "add_clid(NULL) logs an error");
	mark = fake_log_mark();
	h->be->add_revoke_fh(NULL, &fh);
	check(logged_error(mark, "add_revoke_fh"), "add_revoke_fh(NULL, fh) logs an error");
	mark = fake_log_mark();
	h->be->rm_clid(NULL);
	check(logged_error(mark, "rm_clid"), "rm_clid(NULL) logs an error");
}

static void hostile_bad_handles(struct harness *h)
{
	static char big[129];
	nfs_fh4 empty = { .nfs_fh4_len = 0, .nfs_fh4_val = big };
	nfs_fh4 huge = { .nfs_fh4_len = sizeof(big), .nfs_fh4_val = big };
	static const unsigned char owner[] = "bad-handles";
	struct client_spec s = {
		.clientid = 0x6004, .caller = "::ffff:10.77.0.67", .owner = owner,
		.owner_len = (int)sizeof(owner) - 1, .owner_alloc = sizeof(owner) - 1,
	};
	nfs_client_id_t *cid = client_new(&s);
	size_t mark;

	h->be->add_clid(cid);
	mark = fake_log_mark();
	h->be->add_revoke_fh(cid, NULL);
	check(logged_error(mark, "NULL"), "add_revoke_fh(client, NULL) logs an error");
	mark = fake_log_mark();
	h->be->add_revoke_fh(cid, &empty);
	h->be->add_revoke_fh(cid, &huge);
	check(logged_error(mark, "0 bytes") && logged_error(mark, "129 bytes"),
	      "handles of 0 and 129 bytes log errors");
	expire_client(h, cid);
}

static void hostile_null_out_params(struct harness *h)
{
	size_t mark = fake_log_mark();
	int rc;

	h->kv_init(NULL);
	h->ng_init(NULL);
	h->cluster_init(NULL);
	check(logged_error(mark, "rados_kv_backend_init") &&
		      logged_error(mark, "rados_ng_backend_init") &&
		      logged_error(mark, "rados_cluster_backend_init"),
	      "*_backend_init(NULL) log errors");
	mark = fake_log_mark();
	rc = h->be->get_nodeid(NULL);
	check(rc != 0, "get_nodeid(NULL) fails (rc %d)", rc);
	check(logged_error(mark, "get_nodeid"), "get_nodeid(NULL) logs an error");
}

static void scenario_hostile(struct world *w)
{
	scenario = "h";
	isolated(w->h, "owner lengths", hostile_owner_lengths);
	isolated(w->h, "no gsh_client", hostile_no_gsh_client);
	isolated(w->h, "unterminated hostaddr_str", hostile_unterminated_addr);
	isolated(w->h, "NULL client", hostile_null_client);
	isolated(w->h, "bad file handles", hostile_bad_handles);
	isolated(w->h, "NULL out-parameters", hostile_null_out_params);
}

/* ---- scenario (i): a Ganesha version without a known layout ------------------------ */

static void scenario_unknown_version(struct harness *h)
{
	struct config_error_type err;
	const struct fake_kv *valid;
	size_t n, mark;
	nfs_client_id_t *cid;
	int rc;

	scenario = "i";
	valid = valid_items(h, &n);
	mark = fake_log_mark();
	rc = load_block(h, valid, n, &err);
	/* Refused before Ganesha's parser sees a config block of a layout it may not have. */
	check(rc == -1, "under libganesha_nfsd.so." GANESHA_VERSION
	      " the configuration is refused before parsing (rc %d)", rc);
	check(logged_error(mark, "refusing") && fake_log_grep(mark, GANESHA_VERSION, NULL),
	      "the refusal names version " GANESHA_VERSION " at configuration time");
	h->cluster_init(&h->be);
	if (!check(h->be != NULL, "rados_cluster_backend_init hands out the vtable"))
		return;
	mark = fake_log_mark();
	rc = h->be->recovery_init();
	check(rc != 0, "recovery_init under libganesha_nfsd.so." GANESHA_VERSION " fails (%d)",
	      rc);
	check(logged_error(mark, "refusing") && fake_log_grep(mark, GANESHA_VERSION, NULL),
	      "an error line says it is refusing, and names version " GANESHA_VERSION);
	cid = new_c1(0x7001);
	h->be->add_clid(cid);
	read_clids(h, NULL);
	check(client_tag(cid) == NULL && n_offered == 0, "hooks after a refused init do nothing");
	client_free(cid);
	offered_reset();
}


static void run_known_version(struct harness *h)
{
	const unsigned char *o1 = c1_owner;
	struct world w = {
		.h = h,
		.tag1 = expected_tag("::ffff:10.77.0.21", o1, sizeof(c1_owner) - 1),
		.tag2 = expected_tag("::ffff:10.77.0.22", c2_owner, sizeof(c2_owner)),
		.next_id = 0x1001,
	};

	scenario_config(h);
	scenario_start(&w);
	scenario_restart(&w);
	scenario_crash(&w);
	scenario_expire(&w);
	scenario_revoke(&w);
	scenario_takeover(&w);
	scenario_hostile(&w);
	ganesha_stop(h);
	drop_clients(&w);
	offered_reset();
	free(w.tag1);
	free(w.tag2);
}

int main(int argc, char **argv)
{
	struct harness h = { 0 };

	bool unload = argc == 3;

	if (argc != 3 && !(argc == 4 && strcmp(argv[3], "--no-dlclose") == 0)) {
		fprintf(stderr, "usage: %s <libganesha_ctdb_recov.so> <work dir> [--no-dlclose]\n",
			argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	open_library(&h, argv[1], argv[2]);
	printf("harness: fake libganesha_nfsd.so.%s, library %s, store %s\n", GANESHA_VERSION,
	       argv[1], h.store);
	if (strcmp(GANESHA_VERSION, "4.3") == 0 || strcmp(GANESHA_VERSION, "6.5") == 0)
		run_known_version(&h);
	else
		scenario_unknown_version(&h);
	scenario = "end";
	check(fake_log_grep(0, "INVALID-LOG-CALL", NULL) == NULL,
	      "every DisplayLogComponentLevel call had a valid component, level and format");
	free(last_diag);
	if (unload)
		check(dlclose(h.dl) == 0, "dlclose after recovery_shutdown, as ganesha.nfsd does");
	fake_shutdown();
	printf("harness %s: %d failure(s)\n", GANESHA_VERSION, failures);
	return failures == 0 ? 0 : 1;
}
