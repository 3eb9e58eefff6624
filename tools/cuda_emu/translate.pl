#!/usr/bin/perl
# cuda-emu: turns a .cu file into C++ for the emulated build (usage: translate.pl IN OUT).
# Rewrites the two constructs plain C++ cannot parse:
#   kernel<<<grid, block, smem, stream>>>(args)  ->  ::emu::launch(kernel, grid, block, smem, stream)(args)
#   extern __shared__ [__align__(n)] T name[];   ->  T* name = static_cast<T*>(::emu::dynamic_shared());
# and keeps the original file and line numbers for diagnostics (#line).
use strict;
use warnings;
my ($in, $out, $display) = @ARGV;
$display //= $in;
open(my $fi, '<', $in) or die "translate.pl: cannot read $in: $!\n";
my @lines = <$fi>;
close($fi);
my $text = join('', @lines);
$text =~ s{extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w:]*(?:\s+[A-Za-z_][\w:]*)*?)\s+(\w+)\s*\[\s*\]\s*;}
          {$1* $2 = static_cast<$1*>(::emu::dynamic_shared());}g;
$text =~ s{([A-Za-z_][\w:]*(?:<[\w\s,:]*>)?)\s*<<<(.*?)>>>\s*\(}{::emu::launch($1, $2)(}gs;
die "translate.pl: $in: a kernel launch was not rewritten\n" if $text =~ /<<<|>>>/;
open(my $fo, '>', "$out.tmp") or die "translate.pl: cannot write $out: $!\n";
print $fo "#line 1 \"$display\"\n", $text;
close($fo) or die "translate.pl: cannot write $out: $!\n";
rename("$out.tmp", $out) or die "translate.pl: cannot rename to $out: $!\n";
