/*
 * fake_ganesha: a stand-in for libganesha_nfsd.so.4.3 exporting what ganesha-ctdb looks up
 * with dlsym(RTLD_DEFAULT), plus a small test API (fake_*) for the harness.
 */
#ifndef FAKE_GANESHA_H
#define FAKE_GANESHA_H

#include <stdarg.h>
#include <stddef.h>
#include "gsh.h"

/* ---- Ganesha's exports ------------------------------------------------------------- */

extern int *component_log_level;

void DisplayLogComponentLevel(int component, const char *file, int line,
			      const char *function, int level, const char *format, ...)
	__attribute__((format(printf, 6, 7)));

int load_config_from_parse(config_file_t config, struct config_block *conf_blk, void *param,
			   bool unique, struct config_error_type *err_type);

/* ---- the fake parse tree: one top-level block of "key = value;" statements ---------- */

struct fake_kv {
	const char *key;
	const char *value;
};

struct config_root {
	const char *filename;   /* for "Config File (<file>:<line>)" messages */
	const char *block_name; /* NULL: the configuration has no such block */
	const struct fake_kv *items;
	size_t n_items;
	int n_blocks; /* how many times the block appears (0: once), each with these items */
};

/* ---- test API ---------------------------------------------------------------------- */

/* Sets Ganesha's level for one log component (what LOG { Components { X = DEBUG; } } does). */
void fake_set_component_level(int component, int level);

/* Position in the captured log; pass it to fake_log_grep to look only at later lines. */
size_t fake_log_mark(void);

/* The first captured line after `mark` that contains every one of the NULL-terminated
 * needles, or NULL. The result points into the log and is valid until the next log call. */
const char *fake_log_grep(size_t mark, ...) __attribute__((sentinel));

/* Number of captured lines after `mark` logged at exactly `level`. */
size_t fake_log_count_level(size_t mark, int level);

/* Releases everything the fake holds (the log, strings Ganesha 4.3 would abandon). */
void fake_shutdown(void);

#ifdef GSH15
/* 15.x: where Ganesha's exported nfs4_add_clid_entry/nfs4_add_rfh_entry put what a
 * backend hands back (the harness's lists). */
void fake15_set_sinks(clid_entry_t *(*add_clid)(char *, bool),
		      rdel_fh_t *(*add_rfh)(clid_entry_t *, char *));
/* NFSV4 { RecoverySkipIp }: nfs4_create_clid_name leaves the client address out. */
void fake15_set_skip_ip(bool skip);
/* The last tag nfs4_create_clid_name handed out (compared as a pointer, never read after
 * it may have been freed). */
const void *fake15_last_tag(void);
/* Whether gsh_mem_stats_update_free was called for p, and with MEM_COMP_RECOVERY. */
bool fake15_free_accounted(const void *p);
/* How many tags nfs4_create_clid_name made, and how many frees were accounted. */
size_t fake15_tags_made(void);
size_t fake15_frees_accounted(void);
#endif

#endif
