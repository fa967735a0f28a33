/*
 * The CTDB_RECOVERY { } block description handed to Ganesha's load_config_from_parse().
 * Every key is a string; the Rust side validates values (so that its messages can name the
 * key, the bad value and what to write instead) from the commit callback, and once more
 * after parsing because Ganesha does not call commit when the block is absent.
 */
#include <stdlib.h>
#include "ganesha_abi.h"

struct ctdb_recovery_param {
	char *store;
	char *dir;
	char *node_id;
	char *recovery_db;
	char *grace_db;
};

/* Implemented in Rust (src/ganesha/config.rs): returns the number of invalid values. */
extern int ganesha_ctdb_validate_param(const struct ctdb_recovery_param *param);

static struct ctdb_recovery_param param;

/* Ganesha's noop_conf_init contract: (NULL, self) initialises defaults and returns self;
 * (link_mem, NULL) is proc_block asking for the struct to fill, which for a top-level block
 * is the param passed to load_config_from_parse; (link_mem, self) releases on error. */
static void *ctdb_recovery_init(void *link_mem, void *self_struct)
{
	if (link_mem == NULL)
		return self_struct;
	if (self_struct == NULL)
		return link_mem;
	return NULL;
}

static int ctdb_recovery_commit(void *node, void *link_mem, void *self_struct,
				struct config_error_type *err_type)
{
	int errors;

	(void)node;
	(void)link_mem;
	errors = ganesha_ctdb_validate_param(self_struct);
	if (errors > 0) {
		err_type->flags |= GSH_CONFIG_ERR_INVALID;
		err_type->errors += (uint32_t)errors;
	}
	return errors;
}

/* Each key at most once: Ganesha then reports "Parameter X set more than once" with the
 * file and line, and flags the error (config_error_type.unique), which stops the server. */
#define STR_ITEM(_name, _type, _def, _field)                                   \
	{                                                                      \
		.name = _name, .type = _type, .flags = GSH_CONFIG_UNIQUE,      \
		.u.str = {.minsize = 1, .maxsize = 4095, .def = _def },        \
		.off = offsetof(struct ctdb_recovery_param, _field)            \
	}

static struct config_item items[] = {
	STR_ITEM("Store", GSH_CONFIG_STRING, "dir", store),
	STR_ITEM("Dir", GSH_CONFIG_PATH, "/var/lib/ganesha-ctdb", dir),
	STR_ITEM("Node_Id", GSH_CONFIG_STRING, NULL, node_id),
	STR_ITEM("Recovery_DB", GSH_CONFIG_STRING, "ganesha_recovery.tdb", recovery_db),
	STR_ITEM("Grace_DB", GSH_CONFIG_STRING, "ganesha_grace.tdb", grace_db),
	{ .name = NULL },
};

/*
 * Ganesha 15.x's struct config_block is 88 bytes: an enum mem_comp follows the 80 that
 * 4.3-6.x read (its own blocks set 4, MEM_COMP_CONFIG; without it 15.2 warns and falls
 * back to that). Every block here carries it; older versions never read it.
 */
struct config_block_with_mem_comp {
	struct config_block block;
	int mem_comp;
};

#define GSH_MEM_COMP_CONFIG 4

static struct config_block_with_mem_comp block = {
	.block = {
		.dbus_interface_name = "org.ganesha.nfsd.config.ctdb_recovery",
		.blk_desc = {
			.name = "CTDB_RECOVERY",
			.type = GSH_CONFIG_BLOCK,
			.flags = GSH_CONFIG_UNIQUE,
			.u.blk = {
				.init = ctdb_recovery_init,
				.params = items,
				.commit = ctdb_recovery_commit,
			},
		},
	},
	.mem_comp = GSH_MEM_COMP_CONFIG,
};

struct config_block *ganesha_ctdb_config_block(void)
{
	return &block.block;
}

/*
 * A second CTDB_RECOVERY block: Ganesha only logs "Only one CTDB_RECOVERY block allowed"
 * (with its line) and flags no error, so the block would silently lose. This copy of the
 * block description is not unique and commits nothing: load_config_from_parse() over it
 * returns how many CTDB_RECOVERY blocks the file has.
 */
static struct ctdb_recovery_param count_param;

static int count_commit(void *node, void *link_mem, void *self_struct,
			struct config_error_type *err_type)
{
	(void)node;
	(void)link_mem;
	(void)self_struct;
	(void)err_type;
	return 0;
}

static struct config_block_with_mem_comp count_block = {
	.block = {
		.dbus_interface_name = "org.ganesha.nfsd.config.ctdb_recovery_count",
		.blk_desc = {
			.name = "CTDB_RECOVERY",
			.type = GSH_CONFIG_BLOCK,
			.u.blk = {
				.init = ctdb_recovery_init,
				.params = items,
				.commit = count_commit,
			},
		},
	},
	.mem_comp = GSH_MEM_COMP_CONFIG,
};

struct config_block *ganesha_ctdb_count_block(void)
{
	return &count_block.block;
}

struct ctdb_recovery_param *ganesha_ctdb_count_param(void)
{
	return &count_param;
}

struct ctdb_recovery_param *ganesha_ctdb_config_param(void)
{
	return &param;
}
