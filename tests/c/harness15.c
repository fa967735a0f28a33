/*
 * Drives libganesha_ctdb_recov.so the way NFS-Ganesha 15.2 does (the second ABI
 * generation, gsh152.h): the 14-hook table with reclaim_complete at slot 5, a one-argument
 * recovery_read_clids whose clients come back through Ganesha's exported
 * nfs4_add_clid_entry(name, reclaim_complete) and nfs4_add_rfh_entry, tags built by
 * Ganesha's exported nfs4_create_clid_name and freed after gsh_mem_stats_update_free,
 * server addresses as socket addresses (IPv4 and IPv6, NFSv4.0 clients included), the
 * 88-byte config block.
 *
 * usage: harness-15.2 <libganesha_ctdb_recov.so> <empty work directory> [--no-dlclose]
 * Scenarios: (a) configuration and the table, (b) clients filed by their server
 * sockaddr with Ganesha's tags, (c) RECLAIM_COMPLETE recorded and handed back, (d) a
 * v4.1 client that reclaimed but did not complete before a second crash (RFC 8881
 * §8.4.3), (e) takeover of an IPv6 and an IPv4 address, (f) revoked handles, (g) expiry
 * frees Ganesha's tag as Ganesha's backends do, (h) RecoverySkipIp.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness_common.h"

#ifndef GSH15
#error "build with -DGSH15 (the 15.x declarations of gsh152.h)"
#endif

#define IPV6_IP "fd00:77::3"

static struct nfs4_recovery_backend_v15 *table(struct harness *h)
{
	return (struct nfs4_recovery_backend_v15 *)h->be;
}

/* ---- what nfs4_add_clid_entry received --------------------------------------------- */

static bool offered_rc[MAX_OFFERED];

static clid_entry_t *sink_add_clid(char *name, bool reclaim_complete)
{
	clid_entry_t *ent = cb_add_clid_entry(name);

	offered_rc[n_offered - 1] = reclaim_complete;
	return ent;
}

/* The flag handed back with tag (false also when not offered). */
static bool offered_with_rc(const char *tag)
{
	for (size_t i = 0; i < n_offered; i++)
		if (str_eq(offered[i]->cl_name, tag))
			return offered_rc[i];
	return false;
}

static void read_clids(struct harness *h, nfs_grace_start_t *gsp)
{
	offered_reset();
	table(h)->recovery_read_clids(gsp);
}

/* ---- Ganesha's start and stop ------------------------------------------------------ */

static int ganesha_start(struct harness *h)
{
	int rc = ganesha_configure(h);

	if (rc != 0)
		return rc;
	rc = table(h)->recovery_init();
	if (rc != 0)
		return rc;
	table(h)->set_enforcing();
	read_clids(h, NULL);
	return 0;
}

static void ganesha_stop(struct harness *h)
{
	table(h)->maybe_start_grace();
	table(h)->recovery_shutdown();
}

/* ---- clients ----------------------------------------------------------------------- */

static const unsigned char v40_owner[] = "Linux NFSv4.0 client1/10.77.1.3";
static const unsigned char v41a_owner[] = "Linux NFSv4.1 client2";
static const unsigned char v41b_owner[] = "Linux NFSv4.1 client3";

enum who { V40, V41A, V41B, N_CLIENTS };

static nfs_client_id_t *make(enum who who, uint64_t clientid)
{
	static const struct {
		uint32_t minor;
		const char *server;
		const char *caller;
		const unsigned char *owner;
		size_t len;
	} spec[N_CLIENTS] = {
		/* 15.x knows a v4.0 client's server address too. */
		[V40] = { 0, TAKEOVER_IP, "::ffff:10.77.0.21", v40_owner, sizeof(v40_owner) - 1 },
		[V41A] = { 1, IPV6_IP, "fd00:77::21", v41a_owner, sizeof(v41a_owner) - 1 },
		[V41B] = { 2, TAKEOVER_IP, "::ffff:10.77.0.23", v41b_owner, sizeof(v41b_owner) - 1 },
	};
	struct client_spec s = {
		.clientid = clientid, .minorversion = spec[who].minor,
		.server = spec[who].server, .caller = spec[who].caller,
		.owner = spec[who].owner, .owner_len = (int)spec[who].len,
		.owner_alloc = spec[who].len,
	};
	return client_new(&s);
}

struct world {
	struct harness *h;
	nfs_client_id_t *c[N_CLIENTS];
	char *tag[N_CLIENTS]; /* as Ganesha built them first (copies) */
	uint64_t next_id;
};

static void drop_clients(struct world *w)
{
	for (int i = 0; i < N_CLIENTS; i++) {
		client_free(w->c[i]);
		w->c[i] = NULL;
	}
}

/* A client (re)establishes itself: Ganesha makes a client id and calls add_clid. Returns
 * whether cid_recov_tag is exactly the buffer nfs4_create_clid_name handed out. */
static bool establish(struct world *w, enum who who)
{
	client_free(w->c[who]);
	w->c[who] = make(who, w->next_id++);
	table(w->h)->add_clid(w->c[who]);
	return client_tag(w->c[who]) != NULL && client_tag(w->c[who]) == fake15_last_tag();
}

/* Reclaim: the same tag as offered (nfs4_chk_clid), and for v4.1+ only if the entry came
 * with reclaim_complete (15.2's rule). */
static bool may_reclaim(struct world *w, enum who who)
{
	return times_offered(w->tag[who]) == 1 &&
	       (who == V40 || offered_with_rc(w->tag[who]));
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

/* ---- (a) configuration and the table ------------------------------------------------ */

static void scenario_config(struct harness *h)
{
	size_t mark = fake_log_mark();
	struct nfs4_recovery_backend_v15 *t;
	int rc;

	scenario = "a";
	rc = ganesha_start(h);
	check(rc == 0, "start with a valid CTDB_RECOVERY block (rc %d)", rc);
	check(fake_log_grep(mark, "has no mem_comp set", NULL) == NULL,
	      "the config block carries its memory component (88-byte config_block)");
	t = table(h);
	check(t != NULL && t->recovery_init && t->recovery_shutdown && t->recovery_read_clids &&
		      t->add_clid && t->rm_clid && t->reclaim_complete && t->add_revoke_fh &&
		      t->end_grace && t->maybe_start_grace && t->try_lift_grace &&
		      t->set_enforcing && t->grace_enforcing && t->is_member && t->get_nodeid,
	      "all 14 hooks set, reclaim_complete at slot 5");
	check(n_offered == 0, "an empty store offers nothing");
	check(t->grace_enforcing() && t->is_member() && t->try_lift_grace(),
	      "grace_enforcing, is_member, try_lift_grace at their 15.2 slots");
	t->end_grace();
	check(fake_log_grep(mark, "]: RECOVERY :", "recovery backend ready", NULL) != NULL,
	      "the library logs under 15.x's RECOVERY component");
}

/* ---- (b) clients: Ganesha's tags, filed by their server sockaddr -------------------- */

static void scenario_clients(struct world *w)
{
	struct harness *h = w->h;
	size_t made = fake15_tags_made();

	scenario = "b";
	for (int i = 0; i < N_CLIENTS; i++) {
		check(establish(w, (enum who)i),
		      "client %d: cid_recov_tag is the buffer nfs4_create_clid_name made", i);
		w->tag[i] = strdup(client_tag(w->c[i]));
	}
	check(fake15_tags_made() == made + N_CLIENTS, "one tag built per add_clid");
	check(store_files_with(h, w->tag[V40], TAKEOVER_IP) == 1,
	      "the v4.0 client is filed under its server address " TAKEOVER_IP);
	check(store_files_with(h, w->tag[V41A], IPV6_IP) == 1,
	      "the v4.1 client of " IPV6_IP " is filed under that IPv6 address");
	check(store_files_with(h, w->tag[V41B], TAKEOVER_IP) == 1,
	      "the v4.2 client is filed under " TAKEOVER_IP);
}

/* ---- (c) RECLAIM_COMPLETE recorded and handed back ------------------------------------ */

static void scenario_reclaim_complete(struct world *w)
{
	const char *all[] = { w->tag[V40], w->tag[V41A], w->tag[V41B], NULL };

	scenario = "c";
	/* client 2 completes; client 3 (a v4.2 client that never did) does not. */
	table(w->h)->reclaim_complete(w->c[V41A]);
	restart(w, true, "shutdown");
	if (!check(offered_exactly(all), "every client offered once"))
		print_offered();
	check(offered_with_rc(w->tag[V41A]), "the v4.1 client that sent RECLAIM_COMPLETE is "
					     "handed back with reclaim_complete");
	check(!offered_with_rc(w->tag[V41B]), "the v4.2 client that never sent it is not");
	check(may_reclaim(w, V40) && may_reclaim(w, V41A) && !may_reclaim(w, V41B),
	      "so 15.2 lets the v4.0 and the completed v4.1 client reclaim, not the other");
	/* Client 3 is refused (NFS4ERR_NO_GRACE) and establishes itself anew. */
	for (int i = 0; i < N_CLIENTS; i++)
		check(establish(w, (enum who)i) && str_eq(client_tag(w->c[i]), w->tag[i]),
		      "client %d comes back with the same tag", i);
	table(w->h)->reclaim_complete(w->c[V41A]);
	table(w->h)->reclaim_complete(w->c[V41B]);
	table(w->h)->end_grace();
}

/* ---- (d) reclaimed but not completed before a second crash ------------------------- */

static void scenario_second_crash(struct world *w)
{
	scenario = "d";
	/* A restart: client 2 reclaims (a new client id: add_clid) and crashes with the
	 * server before its RECLAIM_COMPLETE; client 3 completes. */
	restart(w, false, "crash");
	check(offered_with_rc(w->tag[V41A]) && offered_with_rc(w->tag[V41B]),
	      "both v4.1+ clients had completed before the first crash");
	check(establish(w, V41A), "client 2 reclaims");
	check(establish(w, V41B), "client 3 reclaims");
	table(w->h)->reclaim_complete(w->c[V41B]);
	restart(w, false, "second crash during grace");
	check(!offered_with_rc(w->tag[V41A]),
	      "client 2, which reclaimed but had not completed, may not reclaim now "
	      "(RFC 8881 §8.4.3)");
	check(offered_with_rc(w->tag[V41B]), "client 3, which completed, may");
	check(times_offered(w->tag[V40]) == 1, "the v4.0 client is still offered");
	for (int i = 0; i < N_CLIENTS; i++)
		establish(w, (enum who)i);
	table(w->h)->reclaim_complete(w->c[V41A]);
	table(w->h)->reclaim_complete(w->c[V41B]);
	table(w->h)->end_grace();
}

/* ---- (e) takeover by IPv6 and by IPv4 address -------------------------------------- */

static void scenario_takeover(struct world *w)
{
	char v6[] = IPV6_IP, v4[] = TAKEOVER_IP;
	nfs_grace_start_t g6 = { .event = EVENT_TAKE_IP, .nodeid = -1, .ipaddr = v6 };
	nfs_grace_start_t g4 = { .event = EVENT_TAKE_IP, .nodeid = -1, .ipaddr = v4 };
	const char *of6[] = { w->tag[V41A], NULL };
	const char *of4[] = { w->tag[V40], w->tag[V41B], NULL };

	scenario = "e";
	table(w->h)->set_enforcing();
	read_clids(w->h, &g6);
	if (!check(offered_exactly(of6), "takeover of " IPV6_IP " offers only its client"))
		print_offered();
	table(w->h)->end_grace();
	read_clids(w->h, &g4);
	if (!check(offered_exactly(of4),
		   "takeover of " TAKEOVER_IP " offers its v4.0 and v4.2 clients"))
		print_offered();
	table(w->h)->end_grace();
}

/* ---- (f) revoked handles ----------------------------------------------------------- */

static void scenario_revoke(struct world *w)
{
	static const unsigned char handle[] = { 0xfb, 0xff, 0x00, 0x10, 0x20, 0x3e, 0x3f };
	nfs_fh4 fh = { .nfs_fh4_len = sizeof(handle), .nfs_fh4_val = (char *)handle };
	char *b64 = expected_base64url(handle, sizeof(handle));
	const clid_entry_t *e;

	scenario = "f";
	table(w->h)->add_revoke_fh(w->c[V41A], &fh);
	restart(w, true, "shutdown");
	e = offered_entry(w->tag[V41A]);
	check(e != NULL && rfh_count(e) == 1 &&
		      str_eq(((rdel_fh_t *)e->cl_rfh_list.next)->rdfh_handle_str, b64),
	      "nfs4_add_rfh_entry receives %s for that client", b64);
	check(foreign_rfh_calls == 0, "only for entries nfs4_add_clid_entry handed out");
	for (int i = 0; i < N_CLIENTS; i++)
		establish(w, (enum who)i);
	table(w->h)->end_grace();
	free(b64);
}

/* ---- (g) expiry frees Ganesha's tag the way its backends do ------------------------- */

static void scenario_expire(struct world *w)
{
	const void *tag = client_tag(w->c[V40]);
	char *copy = strdup(w->tag[V40]);

	scenario = "g";
	table(w->h)->rm_clid(w->c[V40]);
	check(client_tag(w->c[V40]) == NULL, "rm_clid clears cid_recov_tag");
	check(fake15_free_accounted(tag),
	      "and frees it after gsh_mem_stats_update_free(MEM_COMP_RECOVERY)");
	check(store_files_with(w->h, copy, NULL) == 0, "rm_clid removes the record");
	free(copy);
}

/* ---- (h) RecoverySkipIp: Ganesha's tag without the client address ------------------- */

static void scenario_skip_ip(struct world *w)
{
	char *tag;

	scenario = "h";
	fake15_set_skip_ip(true);
	check(establish(w, V40), "a client under RecoverySkipIp gets Ganesha's tag");
	tag = strdup(client_tag(w->c[V40]));
	check(strstr(tag, "10.77.0.21") == NULL && store_files_with(w->h, tag, TAKEOVER_IP) == 1,
	      "which names no client address (\"%s\"), filed under " TAKEOVER_IP, tag);
	restart(w, true, "shutdown");
	check(times_offered(tag) == 1, "and it is offered under that tag after a restart");
	establish(w, V40);
	check(str_eq(client_tag(w->c[V40]), tag), "the client reclaims with the same tag");
	fake15_set_skip_ip(false);
	table(w->h)->end_grace();
	free(tag);
}

int main(int argc, char **argv)
{
	struct harness h = { 0 };
	struct world w = { .h = &h, .next_id = 0x1501 };
	bool unload = argc == 3;

	if (argc != 3 && !(argc == 4 && strcmp(argv[3], "--no-dlclose") == 0)) {
		fprintf(stderr, "usage: %s <libganesha_ctdb_recov.so> <work dir> [--no-dlclose]\n",
			argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	fake15_set_sinks(sink_add_clid, cb_add_rfh_entry);
	open_library(&h, argv[1], argv[2]);
	printf("harness: fake libganesha_nfsd.so.%s, library %s, store %s\n", GANESHA_VERSION,
	       argv[1], h.store);
	scenario_config(&h);
	scenario_clients(&w);
	scenario_reclaim_complete(&w);
	scenario_second_crash(&w);
	scenario_takeover(&w);
	scenario_revoke(&w);
	scenario_expire(&w);
	scenario_skip_ip(&w);
	ganesha_stop(&h);
	drop_clients(&w);
	offered_reset();
	for (int i = 0; i < N_CLIENTS; i++)
		free(w.tag[i]);
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
