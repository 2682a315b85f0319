// Command-line arguments of a benchmark: positional values, `--name` flags and `--name=value` options.
export const benchArgs = (argv = process.argv.slice(2)) => ({
  positional: argv.filter((a) => !a.startsWith("--")),
  flag: (name) => argv.includes(`--${name}`),
  option: (name) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
})
