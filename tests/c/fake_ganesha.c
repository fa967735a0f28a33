/*
 * A stand-in for NFS-Ganesha's libganesha_nfsd.so.<version>: the three exports ganesha-ctdb
 * finds with dlsym(RTLD_DEFAULT), plus the fake_* test API of fake_ganesha.h.
 *
 * load_config_from_parse follows Ganesha 4.3's src/config_parsing/config_parsing.c
 * (load_config_from_parse, proc_block, do_block_init, do_block_load) for string items:
 * the same calls to the block's init/commit, in the same order and with the same
 * arguments, the same error bits and the same defaults-reset when the block fails.
 */
#define _GNU_SOURCE
#include "fake_ganesha.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- logging ----------------------------------------------------------------------- */

static int levels[COMPONENT_COUNT] = { [0 ... COMPONENT_COUNT - 1] = NIV_EVENT };

/* Ganesha exports `log_levels_t *component_log_level`, a pointer to its level array. */
int *component_log_level = levels;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char *log_buf;
static size_t log_len;
static size_t log_cap;

static const char *const level_names[NB_LOG_LEVEL] = {
	"NIV_NULL", "NIV_FATAL", "NIV_MAJ", "NIV_CRIT", "NIV_WARN",
	"NIV_EVENT", "NIV_INFO", "NIV_DEBUG", "NIV_MID_DEBUG", "NIV_FULL_DEBUG",
};

static const char *component_name(int component, char *buf, size_t size)
{
	switch (component) {
	case COMPONENT_CONFIG:
		return "CONFIG";
	case COMPONENT_CLIENTID:
		return "CLIENTID";
	case COMPONENT_STATE:
		return "STATE";
#ifdef GSH15
	case COMPONENT_RECOVERY:
		return "RECOVERY";
#endif
	default:
		snprintf(buf, size, "COMPONENT_%d", component);
		return buf;
	}
}

static void log_append(const char *line, size_t len)
{
	if (log_len + len + 1 > log_cap) {
		size_t cap = log_cap ? log_cap : 4096;
		char *bigger;

		while (log_len + len + 1 > cap)
			cap *= 2;
		bigger = realloc(log_buf, cap);
		if (bigger == NULL)
			abort();
		log_buf = bigger;
		log_cap = cap;
	}
	memcpy(log_buf + log_len, line, len);
	log_len += len;
	log_buf[log_len] = '\0';
}

static void log_emit(const char *line)
{
	const char *path = getenv("FAKE_GANESHA_LOG");

	pthread_mutex_lock(&log_lock);
	log_append(line, strlen(line));
	fputs(line, stdout);
	fflush(stdout);
	if (path != NULL) {
		FILE *f = fopen(path, "a");

		if (f != NULL) {
			fputs(line, f);
			fclose(f);
		}
	}
	pthread_mutex_unlock(&log_lock);
}

/* Ganesha indexes arrays with component and level: out of range would crash it, so the
 * fake records such a call as a line the harness treats as a failure. */
static bool log_call_valid(int component, int level, const char *format)
{
	char line[256];

	if (component >= 0 && component < COMPONENT_COUNT && level >= NIV_NULL &&
	    level < NB_LOG_LEVEL && format != NULL)
		return true;
	snprintf(line, sizeof(line),
		 "fake-ganesha: INVALID-LOG-CALL component=%d level=%d format=%s\n",
		 component, level, format != NULL ? "set" : "NULL");
	log_emit(line);
	return false;
}

void DisplayLogComponentLevel(int component, const char *file, int line,
			      const char *function, int level, const char *format, ...)
{
	char comp_buf[32];
	char *msg = NULL;
	char *text = NULL;
	va_list args;

	if (!log_call_valid(component, level, format))
		return;
	va_start(args, format);
	if (vasprintf(&msg, format, args) < 0)
		msg = NULL;
	va_end(args);
	if (asprintf(&text, "fake-ganesha[%d]: %s :%s :%s (%s:%d) :%s\n", (int)getpid(),
		     component_name(component, comp_buf, sizeof(comp_buf)),
		     level_names[level], function ? function : "?", file ? file : "?", line,
		     msg ? msg : "(vasprintf failed)") >= 0) {
		log_emit(text);
		free(text);
	}
	free(msg);
}

void fake_set_component_level(int component, int level)
{
	if (component >= 0 && component < COMPONENT_COUNT)
		levels[component] = level;
}

size_t fake_log_mark(void)
{
	size_t mark;

	pthread_mutex_lock(&log_lock);
	mark = log_len;
	pthread_mutex_unlock(&log_lock);
	return mark;
}

static bool line_has_all(const char *line, size_t len, va_list needles)
{
	const char *needle;

	while ((needle = va_arg(needles, const char *)) != NULL)
		if (memmem(line, len, needle, strlen(needle)) == NULL)
			return false;
	return true;
}

const char *fake_log_grep(size_t mark, ...)
{
	const char *found = NULL;

	pthread_mutex_lock(&log_lock);
	for (size_t pos = mark; pos < log_len && found == NULL;) {
		const char *line = log_buf + pos;
		size_t len = strcspn(line, "\n");
		va_list needles;

		va_start(needles, mark);
		if (line_has_all(line, len, needles))
			found = line;
		va_end(needles);
		pos += len + 1;
	}
	pthread_mutex_unlock(&log_lock);
	return found;
}

size_t fake_log_count_level(size_t mark, int level)
{
	char token[32];
	size_t count = 0;

	if (level < NIV_NULL || level >= NB_LOG_LEVEL)
		return 0;
	snprintf(token, sizeof(token), " :%s :", level_names[level]);
	pthread_mutex_lock(&log_lock);
	for (size_t pos = mark; pos < log_len;) {
		const char *line = log_buf + pos;
		size_t len = strcspn(line, "\n");

		if (memmem(line, len, token, strlen(token)) != NULL)
			count++;
		pos += len + 1;
	}
	pthread_mutex_unlock(&log_lock);
	return count;
}

/* ---- config parsing ---------------------------------------------------------------- */

/* Ganesha 4.3's do_block_init overwrites string members with their defaults without
 * freeing what they held (a one-off at start-up there). The fake keeps such strings here,
 * still reachable, so that repeated loads in one harness process are not reported as
 * leaks, yet the library sees exactly what Ganesha would do. */
static char **abandoned;
static size_t n_abandoned;

static void abandon(char *s)
{
	char **bigger;

	if (s == NULL)
		return;
	bigger = realloc(abandoned, (n_abandoned + 1) * sizeof(*abandoned));
	if (bigger == NULL)
		abort();
	abandoned = bigger;
	abandoned[n_abandoned++] = s;
}

/* config_proc_error: messages go to err_type->fp when the caller opened one. */
static void proc_error(const struct config_root *tree, int line,
		       struct config_error_type *err_type, const char *format, ...)
	__attribute__((format(printf, 4, 5)));

static void proc_error(const struct config_root *tree, int line,
		       struct config_error_type *err_type, const char *format, ...)
{
	va_list args;

	if (err_type->fp == NULL)
		return;
	fprintf(err_type->fp, "Config File (%s:%d): ",
		tree != NULL && tree->filename != NULL ? tree->filename : "<unknown file>",
		line);
	va_start(args, format);
	vfprintf(err_type->fp, format, args);
	va_end(args);
	fputc('\n', err_type->fp);
}

static bool cur_exp_config_error_is_harmless(const struct config_error_type *e)
{
	bool fatal = e->scan || e->parse || e->init || e->fsal || e->resource;
	bool crit = fatal || e->internal || e->invalid || e->cur_exp_create_err || e->missing;

	return !(crit || e->unique || e->exists || e->dispose);
}

static bool do_block_init(const struct config_root *tree, struct config_item *params,
			  void *param_struct, struct config_error_type *err_type)
{
	for (struct config_item *item = params; item->name != NULL; item++) {
		char **slot = (char **)((char *)param_struct + item->off);

		if (item->type != CONFIG_STRING && item->type != CONFIG_PATH) {
			proc_error(tree, 0, err_type,
				   "fake_ganesha: item %s has type %d, only strings are faked",
				   item->name, item->type);
			err_type->internal = true;
			err_type->errors++;
			return false;
		}
		abandon(*slot);
		*slot = item->u.str.def != NULL ? strdup(item->u.str.def) : NULL;
	}
	return true;
}

static void load_string(char **slot, const char *value)
{
	free(*slot);
	*slot = strdup(value);
}

/* One item: every statement with its name, in order (Ganesha's lookup_node and
 * lookup_next_node compare names with strcasecmp). */
static void load_item(const struct config_root *tree, struct config_item *item,
		      void *param_struct, bool *seen, struct config_error_type *err_type)
{
	char **slot = (char **)((char *)param_struct + item->off);
	bool loaded = false;

	for (size_t i = 0; i < tree->n_items; i++) {
		const struct fake_kv *kv = &tree->items[i];

		if (strcasecmp(kv->key, item->name) != 0)
			continue;
		seen[i] = true;
		if (loaded && (item->flags & CONFIG_UNIQUE)) {
			proc_error(tree, (int)i + 2, err_type, "Parameter %s set more than once",
				   kv->key);
			err_type->unique = true;
			err_type->errors++;
			continue;
		}
		if (kv->value == NULL) /* "Statement X is empty": skipped */
			continue;
		load_string(slot, kv->value);
		loaded = true;
	}
}

static int do_block_load(const struct config_root *tree, struct config_item *params,
			 bool relax, void *param_struct, struct config_error_type *err_type)
{
	uint32_t prev_errors = err_type->errors;
	bool *seen = calloc(tree->n_items + 1, sizeof(bool));
	int errors = 0;

	if (seen == NULL)
		abort();
	for (struct config_item *item = params; item->name != NULL; item++)
		load_item(tree, item, param_struct, seen, err_type);
	if (err_type->errors > prev_errors)
		errors = (int)err_type->errors;
	for (size_t i = 0; !relax && i < tree->n_items; i++) {
		if (seen[i])
			continue;
		/* As in 4.3: bogus is set and the local count grows, err_type->errors does
		 * not, and bogus alone is harmless (the block is still committed). */
		proc_error(tree, (int)i + 2, err_type, "Unknown parameter (%s)",
			   tree->items[i].key);
		err_type->bogus = true;
		errors++;
	}
	free(seen);
	return errors;
}

static bool proc_block(const struct config_root *tree, struct config_item *item,
		       void *link_mem, struct config_error_type *err_type)
{
	void *param_struct = item->u.blk.init(link_mem, NULL);
	int errors;

	if (param_struct == NULL) {
		proc_error(tree, 1, err_type, "Could not init block for %s", item->name);
		err_type->init = true;
		err_type->errors++;
		return false;
	}
	if (!do_block_init(tree, item->u.blk.params, param_struct, err_type)) {
		proc_error(tree, 1, err_type, "Could not initialize parameters for %s",
			   item->name);
		err_type->init = true;
		goto err_out;
	}
	errors = do_block_load(tree, item->u.blk.params, (item->flags & CONFIG_RELAX) != 0,
			       param_struct, err_type);
	if (errors > 0 && !cur_exp_config_error_is_harmless(err_type)) {
		proc_error(tree, 1, err_type, "%d errors while processing parameters for %s",
			   errors, item->name);
		goto err_out;
	}
	if (item->u.blk.check != NULL && item->u.blk.check(param_struct, err_type))
		goto err_out;
	errors = item->u.blk.commit((void *)tree, link_mem, param_struct, err_type);
	if (errors > 0 && !cur_exp_config_error_is_harmless(err_type)) {
		proc_error(tree, 1, err_type, "%d validation errors in block %s", errors,
			   item->name);
		goto err_out;
	}
	if (err_type->dispose) {
		(void)item->u.blk.init(link_mem, param_struct);
		err_type->dispose = false;
	}
	return true;

err_out:
	(void)item->u.blk.init(link_mem, param_struct);
	err_type->dispose = false;
	return false;
}

static bool block_matches(const struct config_block *conf_blk, const char *name)
{
	const char *alt = conf_blk->blk_desc.altname;

	return name != NULL && (strcasecmp(conf_blk->blk_desc.name, name) == 0 ||
				(alt != NULL && strcasecmp(alt, name) == 0));
}

int load_config_from_parse(config_file_t config, struct config_block *conf_blk, void *param,
			   bool unique, struct config_error_type *err_type)
{
	const struct config_root *tree = config;
	const char *blkname = conf_blk->blk_desc.name;
	uint32_t prev_errs = err_type->errors;
	void *blk_mem = NULL;
	int found = 0;

	(void)unique; /* 4.3 ignores it too: blk_desc.flags & CONFIG_UNIQUE decides */
#ifdef GSH15
	/* 15.x reads the block's memory component (88-byte config_block). */
	if (((struct config_block_v15 *)conf_blk)->mem_comp != MEM_COMP_CONFIG)
		DisplayLogComponentLevel(COMPONENT_CONFIG, __FILE__, __LINE__, __func__, NIV_WARN,
					 "Config block %s has no mem_comp set, defaulting to "
					 "MEM_COMP_CONFIG", blkname);
#endif
	if (tree == NULL) {
		proc_error(NULL, 0, err_type, "Missing parse tree root for (%s)", blkname);
		err_type->missing = true;
		return -1;
	}
	if (param != NULL) {
		blk_mem = conf_blk->blk_desc.u.blk.init(NULL, param);
		if (blk_mem == NULL) {
			proc_error(tree, 0, err_type, "Top level block init failed for (%s)",
				   blkname);
			err_type->internal = true;
			return -1;
		}
	}
	for (int b = 0; block_matches(conf_blk, tree->block_name) &&
			b < (tree->n_blocks > 0 ? tree->n_blocks : 1);
	     b++) {
		/* 4.3: a second block of a unique kind is only reported, not an error. */
		if (found > 0 && (conf_blk->blk_desc.flags & CONFIG_UNIQUE)) {
			proc_error(tree, 1, err_type, "Only one %s block allowed", blkname);
			continue;
		}
		err_type->cur_exp_create_err = false;
		if (!proc_block(tree, &conf_blk->blk_desc, blk_mem, err_type))
			proc_error(tree, 1, err_type, "Errors processing block (%s)", blkname);
		else
			found++;
	}
	if (found == 0) {
		/* Nothing (usable) found: defaults, into param or a block init gives. */
		blk_mem = param != NULL ? param
					: conf_blk->blk_desc.u.blk.init((void *)~0UL, NULL);
		if (blk_mem == NULL) {
			fprintf(stderr, "fake-ganesha: block init gave NULL (Ganesha asserts)\n");
			abort();
		}
		if (!do_block_init(tree, conf_blk->blk_desc.u.blk.params, blk_mem, err_type)) {
			proc_error(tree, 0, err_type,
				   "Could not initialize defaults for block %s", blkname);
			err_type->init = true;
		}
	}
	if (err_type->errors > prev_errs)
		proc_error(tree, 0, err_type, "%u errors found block %s",
			   err_type->errors - prev_errs, blkname);
	return found;
}

#ifdef GSH15
/* ---- 15.x exports ------------------------------------------------------------------ */

static clid_entry_t *(*sink_clid)(char *, bool);
static rdel_fh_t *(*sink_rfh)(clid_entry_t *, char *);
static bool skip_ip;
static const void *last_tag;
static size_t tags_made;
static const void **accounted;
static size_t n_accounted;

void fake15_set_sinks(clid_entry_t *(*add_clid)(char *, bool),
		      rdel_fh_t *(*add_rfh)(clid_entry_t *, char *))
{
	sink_clid = add_clid;
	sink_rfh = add_rfh;
}

void fake15_set_skip_ip(bool skip)
{
	skip_ip = skip;
}

const void *fake15_last_tag(void)
{
	return last_tag;
}

size_t fake15_tags_made(void)
{
	return tags_made;
}

size_t fake15_frees_accounted(void)
{
	return n_accounted;
}

bool fake15_free_accounted(const void *p)
{
	for (size_t i = 0; i < n_accounted; i++)
		if (accounted[i] == p)
			return true;
	return false;
}

clid_entry_t *nfs4_add_clid_entry(char *cl_name, bool reclaim_complete)
{
	if (sink_clid == NULL)
		abort();
	return sink_clid(cl_name, reclaim_complete);
}

rdel_fh_t *nfs4_add_rfh_entry(clid_entry_t *clid_ent, char *rfh_name)
{
	if (sink_rfh == NULL)
		abort();
	return sink_rfh(clid_ent, rfh_name);
}

static const void *field_ptr(const void *base, size_t off)
{
	const void *p;

	memcpy(&p, (const char *)base + off, sizeof(p));
	return p;
}

/* "<client address>-(<len>:<owner in hex>)", or without the address (RecoverySkipIp).
 * Ganesha renders printable owners as they are; the library must not care which. */
char *nfs4_create_clid_name(nfs_client_id_t *clientid, size_t *len)
{
	const char *record = field_ptr(clientid, CID_CLIENT_RECORD_OFF);
	const char *gsh = field_ptr(clientid, CID_GSH_CLIENT_OFF);
	const unsigned char *owner = (const unsigned char *)record + CR_CLIENT_VAL_OFF;
	int owner_len;
	char *hex, *tag = NULL;

	memcpy(&owner_len, record + CR_CLIENT_VAL_LEN_OFF, sizeof(owner_len));
	if (owner_len < 0 || owner_len > 1024)
		return NULL;
	hex = malloc(2 * (size_t)owner_len + 1);
	if (hex == NULL)
		abort();
	for (int i = 0; i < owner_len; i++)
		sprintf(hex + 2 * i, "%02x", owner[i]);
	hex[2 * owner_len] = '\0';
	if (asprintf(&tag, "%s%s(%d:%s)",
		     skip_ip ? "" : (gsh != NULL ? gsh + GSH_CLIENT_HOSTADDR_STR_OFF : "(unknown)"),
		     skip_ip ? "" : "-", 2 * owner_len, hex) < 0)
		abort();
	free(hex);
	if (len != NULL)
		*len = strlen(tag);
	last_tag = tag;
	tags_made++;
	return tag;
}

void gsh_mem_stats_update_free(void *p, int component, const char *file, int line,
			       const char *function)
{
	const void **bigger;

	(void)file;
	(void)line;
	(void)function;
	if (component != MEM_COMP_RECOVERY)
		return;
	bigger = realloc(accounted, (n_accounted + 1) * sizeof(*accounted));
	if (bigger == NULL)
		abort();
	accounted = bigger;
	accounted[n_accounted++] = p;
}
#endif

void fake_shutdown(void)
{
	pthread_mutex_lock(&log_lock);
	free(log_buf);
	log_buf = NULL;
	log_len = log_cap = 0;
	pthread_mutex_unlock(&log_lock);
	for (size_t i = 0; i < n_abandoned; i++)
		free(abandoned[i]);
	free(abandoned);
	abandoned = NULL;
	n_abandoned = 0;
#ifdef GSH15
	free(accounted);
	accounted = NULL;
	n_accounted = 0;
#endif
}
